package postgres

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

// fillSQLite gives a SQLite store a bit of everything: domains, a
// catch-all, aliases, accounts (one removed, so its id is never given
// again), mailboxes, messages with flags and keywords, tombstones, a
// large body kept in a file, queue entries with events.
func fillSQLite(t *testing.T, dir string) {
	t.Helper()
	ctx := t.Context()
	s, err := sqlite.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddDomain(ctx, "example.com"))
	must(s.AddDomain(ctx, "example.org"))
	must(s.SetCatchAll(ctx, "example.org", "u@example.com"))
	u, err := s.AddAccount(ctx, store.Account{Address: "u@example.com", PasswordHash: "$argon2id$x",
		SCRAM: "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy", QuotaBytes: 1 << 30, Admin: true})
	must(err)
	gone, err := s.AddAccount(ctx, store.Account{Address: "gone@example.com"})
	must(err)
	must(s.RemoveAccount(ctx, gone.ID))
	must(s.AddAlias(ctx, store.Alias{Address: "team@example.com", Targets: []string{"u@example.com", "x@far.test"}, SendAs: true}))
	_, err = s.CreateMailbox(ctx, u.ID, "Lists/Go", "")
	must(err)
	bodies := []string{
		"Subject: one\r\n\r\nfirst\r\n",
		"Subject: two\r\n\r\nsecond\r\n",
		"Subject: big\r\n\r\n" + strings.Repeat("a large body line\r\n", 20000), // a file in SQLite
		"Subject: three\r\n\r\nthird\r\n",
	}
	for i, body := range bodies {
		b, err := s.Spool(ctx, strings.NewReader(body), 10<<20)
		must(err)
		d := &store.Delivery{Blob: b, Info: &msginfo.Info{Size: int64(len(body)), Preview: body[9:14]}, From: "a@b.test",
			Local: []store.Target{{AccountID: u.ID, Mailbox: "INBOX", Flags: []string{store.FlagSeen, "Work"},
				InternalDate: time.Date(2025, 1, i+1, 0, 0, 0, 0, time.UTC)}}}
		if i == 1 {
			d.Remote = []store.QueueRecipient{{Address: "x@far.test", Notify: "FAILURE"}, {Address: "y@other.test"}}
			d.DSN = store.DSN{Ret: "HDRS", EnvID: "e1"}
		}
		_, err = s.Deliver(ctx, d)
		must(err)
	}
	inbox, err := s.GetMailbox(ctx, u.ID, "INBOX")
	must(err)
	lists, err := s.GetMailbox(ctx, u.ID, "Lists/Go")
	must(err)
	_, _, err = s.StoreFlags(ctx, inbox.ID, []uint32{1}, store.FlagsAdd, []string{store.FlagFlagged}, 0)
	must(err)
	_, _, err = s.Copy(ctx, inbox.ID, []uint32{1, 3}, lists.ID)
	must(err)
	_, err = s.Expunge(ctx, inbox.ID, []uint32{2})
	must(err)
	must(s.AddEvent(ctx, store.Event{QueueID: 1, Kind: "attempt", Detail: "451 later"}))
}

// snapshot reads through the store interface everything a client or the
// relay sees.
type snapshot struct {
	Domains   []store.Domain
	Accounts  []store.Account
	Aliases   []store.Alias
	Mailboxes []store.Mailbox
	Messages  map[string][]store.Message
	Changes   map[string]store.Changes
	Bodies    map[string][]byte
	Queue     []store.QueueEntry
	Events    map[int64][]store.Event
}

func takeSnapshot(t *testing.T, s store.Store) snapshot {
	t.Helper()
	ctx := t.Context()
	var sn snapshot
	var err error
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	sn.Domains, err = s.ListDomains(ctx)
	check(err)
	sn.Accounts, err = s.ListAccounts(ctx, "")
	check(err)
	sn.Aliases, err = s.ListAliases(ctx, "")
	check(err)
	sn.Messages, sn.Changes, sn.Bodies = map[string][]store.Message{}, map[string]store.Changes{}, map[string][]byte{}
	for _, a := range sn.Accounts {
		mbs, err := s.ListMailboxes(ctx, a.ID)
		check(err)
		sn.Mailboxes = append(sn.Mailboxes, mbs...)
		for _, mb := range mbs {
			metas, err := s.ListMessages(ctx, mb.ID)
			check(err)
			var uids []uint32
			for _, m := range metas {
				uids = append(uids, m.UID)
			}
			ms, err := s.GetMessages(ctx, mb.ID, uids)
			check(err)
			for i := range ms {
				// store/sqlite leaves the embedded MessageMeta.Size unset
				// in GetMessages; this store sets both.
				ms[i].MessageMeta.Size = ms[i].Size
			}
			sn.Messages[mb.Name] = ms
			sn.Changes[mb.Name], err = s.ChangesSince(ctx, mb.ID, 0)
			check(err)
			for _, m := range ms {
				r, err := s.OpenBlob(ctx, m.BlobID)
				check(err)
				body, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
				check(err)
				r.Close()
				sn.Bodies[m.BlobID] = body
			}
		}
	}
	sn.Queue, err = s.ListQueue(ctx)
	check(err)
	sn.Events = map[int64][]store.Event{}
	for _, e := range sn.Queue {
		sn.Events[e.ID], err = s.QueueEvents(ctx, e.ID)
		check(err)
	}
	return sn
}

func TestImportSQLite(t *testing.T) {
	dir := t.TempDir()
	fillSQLite(t, dir)
	src, err := sqlite.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := takeSnapshot(t, src)
	src.Close()

	dst := openTest(t)
	var last ImportProgress
	calls := 0
	counts, err := dst.ImportSQLite(t.Context(), dir, func(p ImportProgress) {
		if p.Done < last.Done || p.Total <= 0 || p.Done > p.Total {
			t.Errorf("progress %+v after %+v", p, last)
		}
		last = p
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if last.Done != last.Total || calls == 0 {
		t.Errorf("progress ended at %+v after %d calls", last, calls)
	}
	if counts["messages"] != 5 || counts["tombstones"] != 1 || counts["queue"] != 2 || counts["accounts"] != 1 {
		t.Errorf("counts %v", counts)
	}
	got := takeSnapshot(t, dst)
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			name := gv.Type().Field(i).Name
			if name == "Bodies" {
				t.Errorf("bodies differ after import")
				continue
			}
			t.Errorf("%s after import:\n got %+v\nwant %+v", name, gv.Field(i).Interface(), wv.Field(i).Interface())
		}
	}
	if len(want.Bodies) != 3 || !bytes.Contains(got.Bodies[want.Messages["INBOX"][1].BlobID], []byte("a large body line")) {
		t.Errorf("bodies: %d", len(want.Bodies))
	}
	if len(want.Changes["INBOX"].Vanished) != 1 {
		t.Errorf("no tombstone to compare: %+v", want.Changes["INBOX"])
	}

	// Ids, UIDVALIDITYs and UIDs go on from where SQLite left them.
	ctx := t.Context()
	a, err := dst.AddAccount(ctx, store.Account{Address: "new@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID <= want.Accounts[0].ID+1 { // +1: the removed account's id
		t.Errorf("new account id %d reuses an old one (last %d)", a.ID, want.Accounts[0].ID)
	}
	mb, err := dst.CreateMailbox(ctx, a.ID, "Fresh", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range want.Mailboxes {
		if mb.UIDValidity <= old.UIDValidity || mb.ID <= old.ID {
			t.Errorf("new mailbox %+v not after %+v", mb, old)
		}
	}
	b, _ := dst.Spool(ctx, strings.NewReader("Subject: after\r\n\r\n"), 1<<20)
	d, err := dst.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: want.Accounts[0].ID, Mailbox: "INBOX"}}})
	if err != nil || d[0].UID != 5 {
		t.Errorf("delivery after import: %+v %v", d, err)
	}

	// A second import over data is refused, and changes nothing.
	if _, err := dst.ImportSQLite(ctx, dir, nil); !errors.Is(err, store.ErrExists) {
		t.Errorf("import into a non-empty store: %v", err)
	}
	checkStore(t, dst)
}

// TestImportBeforeSCRAM copies a data directory last opened before
// schema 2 (no SCRAM keys column): tern migrate does not migrate its
// source, and the accounts arrive without keys, to get them at their
// next password login.
func TestImportBeforeSCRAM(t *testing.T) {
	dir := t.TempDir()
	fillSQLite(t, dir)
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "tern.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER TABLE accounts DROP COLUMN scram`, `PRAGMA user_version = 1`} {
		if _, err := raw.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	dst := openTest(t)
	if _, err := dst.ImportSQLite(t.Context(), dir, nil); err != nil {
		t.Fatal(err)
	}
	a, err := dst.GetAccount(t.Context(), "u@example.com")
	if err != nil || a.PasswordHash != "$argon2id$x" || a.SCRAM != "" {
		t.Fatalf("imported account %+v, %v", a, err)
	}
}

func TestImportRefusesUnknownColumns(t *testing.T) {
	dir := t.TempDir()
	fillSQLite(t, dir)
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "tern.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(context.Background(), `ALTER TABLE messages ADD COLUMN thread_id INTEGER`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	dst := openTest(t)
	_, err = dst.ImportSQLite(t.Context(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "thread_id") {
		t.Fatalf("import of an unknown column: %v", err)
	}
	if _, err := dst.ListDomains(t.Context()); err != nil {
		t.Fatal(err)
	}
}
