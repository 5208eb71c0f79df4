// Package storetest is the conformance suite every store.Store
// implementation must pass. An implementation's test calls Run with a
// function that opens a fresh, empty store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

// Run runs the suite. open must return a new empty store; Run closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"Domains", testDomains},
		{"Accounts", testAccounts},
		{"Aliases", testAliases},
		{"DefaultMailboxes", testDefaultMailboxes},
		{"CreateDeleteMailbox", testCreateDeleteMailbox},
		{"RenameMailbox", testRenameMailbox},
		{"RenameInbox", testRenameInbox},
		{"UIDModSeqIncrease", testUIDModSeq},
		{"Flags", testFlags},
		{"UnchangedSince", testUnchangedSince},
		{"ExpungeTombstones", testExpunge},
		{"CopyMove", testCopyMove},
		{"BlobDedupeAndGC", testBlobDedupeGC},
		{"LargeBlob", testLargeBlob},
		{"SpoolTooBig", testSpoolTooBig},
		{"Quota", testQuota},
		{"ConcurrentDeliver", testConcurrentDeliver},
		{"FailingDeliveryIsolated", testFailingDeliveryIsolated},
		{"Queue", testQueue},
		{"Subscribe", testSubscribe},
		{"Lock", testLock},
		{"GetMessages", testGetMessages},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			t.Cleanup(func() { st.Close() })
			tc.fn(t, st)
			checkClean(t, st)
		})
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func checkClean(t *testing.T, st store.Store) {
	t.Helper()
	problems, err := st.Check(ctx(t))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, p := range problems {
		t.Errorf("Check: %s", p)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// newAccount adds the address's domain (if needed) and the account.
func newAccount(t *testing.T, st store.Store, addr string) store.Account {
	t.Helper()
	dom := addr[strings.LastIndexByte(addr, '@')+1:]
	if _, err := st.GetDomain(ctx(t), dom); errors.Is(err, store.ErrNotFound) {
		must(t, st.AddDomain(ctx(t), dom), "AddDomain")
	}
	a, err := st.AddAccount(ctx(t), store.Account{Address: addr, PasswordHash: "$argon2id$x"})
	must(t, err, "AddAccount")
	return a
}

func spool(t *testing.T, st store.Store, body string) *store.Blob {
	t.Helper()
	b, err := st.Spool(ctx(t), strings.NewReader(body), 10<<20)
	must(t, err, "Spool")
	return b
}

func message(n int) string {
	return fmt.Sprintf("From: a@example.org\r\nTo: b@example.com\r\nSubject: test %d\r\n\r\nbody %d\r\n", n, n)
}

// deliver files body into one mailbox and returns where.
func deliver(t *testing.T, st store.Store, acct int64, mailbox, body string, flags ...string) store.Delivered {
	t.Helper()
	d, err := st.Deliver(ctx(t), &store.Delivery{
		Blob:  spool(t, st, body),
		Info:  &msginfo.Info{Size: int64(len(body))},
		From:  "a@example.org",
		Local: []store.Target{{AccountID: acct, Mailbox: mailbox, Flags: flags}},
	})
	must(t, err, "Deliver")
	if len(d) != 1 {
		t.Fatalf("Deliver returned %d results, want 1", len(d))
	}
	return d[0]
}

func mailbox(t *testing.T, st store.Store, acct int64, name string) store.Mailbox {
	t.Helper()
	m, err := st.GetMailbox(ctx(t), acct, name)
	must(t, err, "GetMailbox "+name)
	return m
}

func uidsOf(metas []store.MessageMeta) []uint32 {
	var out []uint32
	for _, m := range metas {
		out = append(out, m.UID)
	}
	return out
}

func listUIDs(t *testing.T, st store.Store, mailboxID int64) []uint32 {
	t.Helper()
	ms, err := st.ListMessages(ctx(t), mailboxID)
	must(t, err, "ListMessages")
	return uidsOf(ms)
}

func testDomains(t *testing.T, st store.Store) {
	c := ctx(t)
	must(t, st.AddDomain(c, "example.com"), "AddDomain")
	wantErr(t, st.AddDomain(c, "example.com"), store.ErrExists, "AddDomain twice")
	must(t, st.AddDomain(c, "example.net"), "AddDomain")
	d, err := st.GetDomain(c, "example.com")
	must(t, err, "GetDomain")
	if d.Name != "example.com" || d.Created.IsZero() {
		t.Errorf("GetDomain = %+v", d)
	}
	_, err = st.GetDomain(c, "nope.example")
	wantErr(t, err, store.ErrNotFound, "GetDomain missing")
	ds, err := st.ListDomains(c)
	must(t, err, "ListDomains")
	if len(ds) != 2 {
		t.Errorf("ListDomains = %d domains, want 2", len(ds))
	}
	must(t, st.SetCatchAll(c, "example.com", "postmaster@example.com"), "SetCatchAll")
	if d, _ := st.GetDomain(c, "example.com"); d.CatchAll != "postmaster@example.com" {
		t.Errorf("CatchAll = %q", d.CatchAll)
	}
	wantErr(t, st.SetCatchAll(c, "nope.example", "x@y"), store.ErrNotFound, "SetCatchAll missing domain")

	a := newAccount(t, st, "user@example.com")
	deliver(t, st, a.ID, "INBOX", message(1))
	must(t, st.AddAlias(c, store.Alias{Address: "al@example.net", Targets: []string{"user@example.com"}}), "AddAlias")
	wantErr(t, st.RemoveDomain(c, "example.com", false), store.ErrInUse, "RemoveDomain with account")
	wantErr(t, st.RemoveDomain(c, "example.net", false), store.ErrInUse, "RemoveDomain with alias")
	must(t, st.RemoveDomain(c, "example.com", true), "RemoveDomain force")
	_, err = st.GetAccount(c, "user@example.com")
	wantErr(t, err, store.ErrNotFound, "account after forced domain removal")
	must(t, st.RemoveDomain(c, "example.net", true), "RemoveDomain force alias domain")
	_, err = st.GetAlias(c, "al@example.net")
	wantErr(t, err, store.ErrNotFound, "alias after forced domain removal")
	wantErr(t, st.RemoveDomain(c, "example.com", false), store.ErrNotFound, "RemoveDomain twice")
	must(t, st.AddDomain(c, "empty.example"), "AddDomain")
	must(t, st.RemoveDomain(c, "empty.example", false), "RemoveDomain empty")
}

func testAccounts(t *testing.T, st store.Store) {
	c := ctx(t)
	_, err := st.AddAccount(c, store.Account{Address: "x@nodomain.example"})
	wantErr(t, err, store.ErrNotFound, "AddAccount without domain")
	a := newAccount(t, st, "one@example.com")
	b := newAccount(t, st, "two@example.com")
	newAccount(t, st, "three@example.org")
	if a.ID == 0 || a.ID == b.ID || a.Created.IsZero() {
		t.Fatalf("AddAccount returned %+v, %+v", a, b)
	}
	_, err = st.AddAccount(c, store.Account{Address: "one@example.com"})
	wantErr(t, err, store.ErrExists, "AddAccount twice")

	got, err := st.GetAccount(c, "one@example.com")
	must(t, err, "GetAccount")
	if got.ID != a.ID || got.PasswordHash != "$argon2id$x" {
		t.Errorf("GetAccount = %+v", got)
	}
	got, err = st.GetAccountByID(c, b.ID)
	must(t, err, "GetAccountByID")
	if got.Address != "two@example.com" {
		t.Errorf("GetAccountByID = %+v", got)
	}
	_, err = st.GetAccount(c, "nobody@example.com")
	wantErr(t, err, store.ErrNotFound, "GetAccount missing")
	_, err = st.GetAccountByID(c, 1<<40)
	wantErr(t, err, store.ErrNotFound, "GetAccountByID missing")

	all, err := st.ListAccounts(c, "")
	must(t, err, "ListAccounts")
	com, err := st.ListAccounts(c, "example.com")
	must(t, err, "ListAccounts domain")
	if len(all) != 3 || len(com) != 2 {
		t.Errorf("ListAccounts: %d all, %d in example.com", len(all), len(com))
	}

	must(t, st.SetPassword(c, a.ID, "$argon2id$new"), "SetPassword")
	must(t, st.SetQuota(c, a.ID, 12345), "SetQuota")
	must(t, st.SetAdmin(c, a.ID, true), "SetAdmin")
	got, _ = st.GetAccountByID(c, a.ID)
	if got.PasswordHash != "$argon2id$new" || got.QuotaBytes != 12345 || !got.Admin {
		t.Errorf("after updates: %+v", got)
	}
	wantErr(t, st.SetPassword(c, 1<<40, "x"), store.ErrNotFound, "SetPassword missing")
	wantErr(t, st.SetQuota(c, 1<<40, 1), store.ErrNotFound, "SetQuota missing")

	deliver(t, st, a.ID, "INBOX", message(1))
	must(t, st.RemoveAccount(c, a.ID), "RemoveAccount")
	_, err = st.GetAccountByID(c, a.ID)
	wantErr(t, err, store.ErrNotFound, "account after removal")
	wantErr(t, st.RemoveAccount(c, a.ID), store.ErrNotFound, "RemoveAccount twice")
	mbs, err := st.ListMailboxes(c, a.ID)
	if err == nil && len(mbs) != 0 {
		t.Errorf("removed account still has %d mailboxes", len(mbs))
	}
}

func testAliases(t *testing.T, st store.Store) {
	c := ctx(t)
	newAccount(t, st, "user@example.com")
	al := store.Alias{Address: "team@example.com", Targets: []string{"user@example.com", "far@remote.example"}, SendAs: true}
	must(t, st.AddAlias(c, al), "AddAlias")
	wantErr(t, st.AddAlias(c, al), store.ErrExists, "AddAlias twice")
	wantErr(t, st.AddAlias(c, store.Alias{Address: "user@example.com", Targets: []string{"x@y.example"}}), store.ErrExists, "alias over account")
	_, err := st.AddAccount(c, store.Account{Address: "team@example.com"})
	wantErr(t, err, store.ErrExists, "account over alias")
	got, err := st.GetAlias(c, "team@example.com")
	must(t, err, "GetAlias")
	if !slices.Equal(got.Targets, al.Targets) || !got.SendAs || got.Created.IsZero() {
		t.Errorf("GetAlias = %+v", got)
	}
	list, err := st.ListAliases(c, "example.com")
	must(t, err, "ListAliases")
	if len(list) != 1 {
		t.Errorf("ListAliases = %d", len(list))
	}
	must(t, st.RemoveAlias(c, "team@example.com"), "RemoveAlias")
	wantErr(t, st.RemoveAlias(c, "team@example.com"), store.ErrNotFound, "RemoveAlias twice")
	_, err = st.GetAlias(c, "team@example.com")
	wantErr(t, err, store.ErrNotFound, "GetAlias removed")
}

func testDefaultMailboxes(t *testing.T, st store.Store) {
	a := newAccount(t, st, "user@example.com")
	mbs, err := st.ListMailboxes(ctx(t), a.ID)
	must(t, err, "ListMailboxes")
	if len(mbs) != len(store.DefaultMailboxes) {
		t.Fatalf("%d mailboxes, want %d", len(mbs), len(store.DefaultMailboxes))
	}
	seen := map[uint32]bool{}
	for _, want := range store.DefaultMailboxes {
		m := mailbox(t, st, a.ID, want.Name)
		if m.SpecialUse != want.SpecialUse || !m.Subscribed || m.UIDNext != 1 || m.UIDValidity == 0 || m.AccountID != a.ID {
			t.Errorf("mailbox %s = %+v", want.Name, m)
		}
		if seen[m.UIDValidity] {
			t.Errorf("UIDVALIDITY %d reused", m.UIDValidity)
		}
		seen[m.UIDValidity] = true
	}
	if m := mailbox(t, st, a.ID, "inbox"); m.Name != "INBOX" {
		t.Errorf("GetMailbox(inbox).Name = %q", m.Name)
	}
	_, err = st.GetMailbox(ctx(t), a.ID, "Nope")
	wantErr(t, err, store.ErrNoSuchMailbox, "GetMailbox missing")
}

func testCreateDeleteMailbox(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	m, err := st.CreateMailbox(c, a.ID, "Lists/Go", "")
	must(t, err, "CreateMailbox")
	if m.Name != "Lists/Go" || m.UIDNext != 1 || m.UIDValidity == 0 {
		t.Errorf("CreateMailbox = %+v", m)
	}
	_, err = st.CreateMailbox(c, a.ID, "Lists/Go", "")
	wantErr(t, err, store.ErrExists, "CreateMailbox twice")
	_, err = st.CreateMailbox(c, a.ID, "inbox", "")
	wantErr(t, err, store.ErrExists, "CreateMailbox inbox")
	wantErr(t, st.DeleteMailbox(c, a.ID, "INBOX"), store.ErrInvalid, "DeleteMailbox INBOX")
	wantErr(t, st.DeleteMailbox(c, a.ID, "Nope"), store.ErrNoSuchMailbox, "DeleteMailbox missing")

	d := deliver(t, st, a.ID, "Lists/Go", message(1))
	if d.MailboxID != m.ID || d.UIDValidity != m.UIDValidity || d.UID != 1 {
		t.Errorf("Delivered = %+v", d)
	}
	must(t, st.SetSubscribed(c, a.ID, "Lists/Go", true), "SetSubscribed")
	if got := mailbox(t, st, a.ID, "Lists/Go"); !got.Subscribed {
		t.Errorf("not subscribed")
	}
	must(t, st.DeleteMailbox(c, a.ID, "Lists/Go"), "DeleteMailbox")
	_, err = st.GetMailbox(c, a.ID, "Lists/Go")
	wantErr(t, err, store.ErrNoSuchMailbox, "deleted mailbox")
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 0 {
		t.Errorf("UsedBytes after DeleteMailbox = %d", acct.UsedBytes)
	}
	again, err := st.CreateMailbox(c, a.ID, "Lists/Go", "")
	must(t, err, "CreateMailbox again")
	if again.UIDValidity == m.UIDValidity {
		t.Errorf("recreated mailbox reuses UIDVALIDITY %d", m.UIDValidity)
	}
}

func testRenameMailbox(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	for _, n := range []string{"Work", "Work/2025", "Work/2025/Q1", "Workshop"} {
		_, err := st.CreateMailbox(c, a.ID, n, "")
		must(t, err, "CreateMailbox "+n)
	}
	before := mailbox(t, st, a.ID, "Work/2025")
	d := deliver(t, st, a.ID, "Work/2025", message(1))
	must(t, st.RenameMailbox(c, a.ID, "Work", "Job"), "RenameMailbox")
	for _, n := range []string{"Job", "Job/2025", "Job/2025/Q1", "Workshop"} {
		mailbox(t, st, a.ID, n)
	}
	for _, n := range []string{"Work", "Work/2025", "Work/2025/Q1"} {
		_, err := st.GetMailbox(c, a.ID, n)
		wantErr(t, err, store.ErrNoSuchMailbox, "old name "+n)
	}
	after := mailbox(t, st, a.ID, "Job/2025")
	if after.ID != before.ID || after.UIDValidity != before.UIDValidity {
		t.Errorf("renamed mailbox changed identity: %+v -> %+v", before, after)
	}
	if got := listUIDs(t, st, after.ID); !slices.Equal(got, []uint32{d.UID}) {
		t.Errorf("messages after rename = %v", got)
	}
	wantErr(t, st.RenameMailbox(c, a.ID, "Job", "Workshop"), store.ErrExists, "rename onto existing")
	wantErr(t, st.RenameMailbox(c, a.ID, "Nope", "Other"), store.ErrNoSuchMailbox, "rename missing")
	wantErr(t, st.RenameMailbox(c, a.ID, "Job", "INBOX"), store.ErrExists, "rename onto INBOX")
	_, err := st.CreateMailbox(c, a.ID, "Job2/2025", "")
	must(t, err, "CreateMailbox")
	wantErr(t, st.RenameMailbox(c, a.ID, "Job", "Job2"), store.ErrExists, "rename with child collision")
	wantErr(t, st.RenameMailbox(c, a.ID, "Job", "Job/Sub"), store.ErrInvalid, "rename into itself")

	// Non-ASCII names rename with their children.
	for _, n := range []string{"Café", "Café/Menü", "Café/Menü/日本", "Cafés"} {
		_, err := st.CreateMailbox(c, a.ID, n, "")
		must(t, err, "CreateMailbox "+n)
	}
	must(t, st.RenameMailbox(c, a.ID, "Café", "Bistro"), "RenameMailbox non-ASCII")
	for _, n := range []string{"Bistro", "Bistro/Menü", "Bistro/Menü/日本", "Cafés"} {
		mailbox(t, st, a.ID, n)
	}
}

func testRenameInbox(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	inbox := mailbox(t, st, a.ID, "INBOX")
	for i := range 3 {
		deliver(t, st, a.ID, "INBOX", message(i), store.FlagSeen)
	}
	must(t, st.RenameMailbox(c, a.ID, "INBOX", "Old"), "RenameMailbox INBOX")
	old := mailbox(t, st, a.ID, "Old")
	if got := listUIDs(t, st, old.ID); len(got) != 3 {
		t.Errorf("Old has %v, want 3 messages", got)
	}
	if got := listUIDs(t, st, inbox.ID); len(got) != 0 {
		t.Errorf("INBOX still has %v", got)
	}
	after := mailbox(t, st, a.ID, "INBOX")
	if after.ID != inbox.ID || after.UIDValidity != inbox.UIDValidity || after.UIDNext != 4 {
		t.Errorf("INBOX after rename = %+v (was %+v)", after, inbox)
	}
	ch, err := st.ChangesSince(c, inbox.ID, 0)
	must(t, err, "ChangesSince")
	if !slices.Equal(ch.Vanished, []uint32{1, 2, 3}) {
		t.Errorf("INBOX vanished = %v", ch.Vanished)
	}
	ms, _ := st.GetMessages(c, old.ID, listUIDs(t, st, old.ID))
	for _, m := range ms {
		if !slices.Contains(m.Flags, store.FlagSeen) {
			t.Errorf("moved message lost flags: %v", m.Flags)
		}
	}
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != int64(len(message(0))*3) {
		t.Errorf("UsedBytes = %d after INBOX rename", acct.UsedBytes)
	}
}

func testUIDModSeq(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	var lastUID uint32
	var lastMod uint64
	for i := range 10 {
		d := deliver(t, st, a.ID, "INBOX", message(i))
		if d.UID <= lastUID {
			t.Fatalf("UID %d after %d", d.UID, lastUID)
		}
		lastUID = d.UID
		m := mailbox(t, st, a.ID, "INBOX")
		if m.HighestModSeq <= lastMod || m.UIDNext != d.UID+1 {
			t.Fatalf("mailbox after delivery %d: %+v (last modseq %d)", i, m, lastMod)
		}
		lastMod = m.HighestModSeq
	}
	ms, err := st.ListMessages(c, mailbox(t, st, a.ID, "INBOX").ID)
	must(t, err, "ListMessages")
	for i := 1; i < len(ms); i++ {
		if ms[i].UID <= ms[i-1].UID || ms[i].ModSeq <= ms[i-1].ModSeq {
			t.Errorf("messages not strictly increasing: %+v then %+v", ms[i-1], ms[i])
		}
	}
	if ms[len(ms)-1].ModSeq != lastMod {
		t.Errorf("last message modseq %d, HIGHESTMODSEQ %d", ms[len(ms)-1].ModSeq, lastMod)
	}
	// Flag changes and expunges take new MODSEQs too.
	mb := mailbox(t, st, a.ID, "INBOX")
	up, _, err := st.StoreFlags(c, mb.ID, []uint32{1, 2}, store.FlagsAdd, []string{store.FlagFlagged}, 0)
	must(t, err, "StoreFlags")
	for _, u := range up {
		if u.ModSeq <= lastMod {
			t.Errorf("flag change modseq %d not above %d", u.ModSeq, lastMod)
		}
	}
	if up[0].ModSeq == up[1].ModSeq {
		t.Logf("note: one MODSEQ for both messages of one STORE")
	}
	mb2 := mailbox(t, st, a.ID, "INBOX")
	_, err = st.Expunge(c, mb.ID, []uint32{3})
	must(t, err, "Expunge")
	if mb3 := mailbox(t, st, a.ID, "INBOX"); mb3.HighestModSeq <= mb2.HighestModSeq || mb3.UIDNext != mb2.UIDNext {
		t.Errorf("after expunge: %+v, before %+v", mb3, mb2)
	}
	// UIDs are not reused after expunging the last message.
	_, err = st.Expunge(c, mb.ID, []uint32{10})
	must(t, err, "Expunge")
	if d := deliver(t, st, a.ID, "INBOX", message(99)); d.UID != 11 {
		t.Errorf("UID after expunging the last = %d, want 11", d.UID)
	}
}

func flagsOf(t *testing.T, st store.Store, mailboxID int64, uid uint32) store.MessageMeta {
	t.Helper()
	ms, err := st.GetMessages(ctx(t), mailboxID, []uint32{uid})
	must(t, err, "GetMessages")
	if len(ms) != 1 {
		t.Fatalf("GetMessages(%d) = %d messages", uid, len(ms))
	}
	return ms[0].MessageMeta
}

func testFlags(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	d := deliver(t, st, a.ID, "INBOX", message(1), `\seen`, `\Recent`, "Work", "work", "$Label1")
	mb := d.MailboxID
	got := flagsOf(t, st, mb, d.UID).Flags
	if want := []string{store.FlagSeen, "$Label1", "Work"}; !slices.Equal(got, want) {
		t.Errorf("delivered flags = %q, want %q", got, want)
	}
	steps := []struct {
		op    store.FlagOp
		flags []string
		want  []string
	}{
		{store.FlagsAdd, []string{`\FLAGGED`, "WORK", "Zeta", `\Answered`}, []string{store.FlagAnswered, store.FlagFlagged, store.FlagSeen, "$Label1", "Work", "Zeta"}},
		{store.FlagsRemove, []string{"work", `\seen`, "nothere"}, []string{store.FlagAnswered, store.FlagFlagged, "$Label1", "Zeta"}},
		{store.FlagsReplace, []string{`\Deleted`, "zeta", "Alpha", "ALPHA"}, []string{store.FlagDeleted, "Alpha", "Zeta"}},
		{store.FlagsReplace, nil, []string{}},
	}
	prev := flagsOf(t, st, mb, d.UID).ModSeq
	for i, s := range steps {
		up, failed, err := st.StoreFlags(c, mb, []uint32{d.UID, 999}, s.op, s.flags, 0)
		must(t, err, "StoreFlags")
		if len(failed) != 0 || len(up) != 1 {
			t.Fatalf("step %d: updated %v failed %v", i, up, failed)
		}
		if len(up[0].Flags) != 0 || len(s.want) != 0 {
			if !slices.Equal(up[0].Flags, s.want) {
				t.Errorf("step %d: flags %q, want %q", i, up[0].Flags, s.want)
			}
		}
		if up[0].ModSeq <= prev {
			t.Errorf("step %d: modseq %d not above %d", i, up[0].ModSeq, prev)
		}
		prev = up[0].ModSeq
		if now := flagsOf(t, st, mb, d.UID); now.ModSeq != up[0].ModSeq || !slices.Equal(now.Flags, up[0].Flags) {
			t.Errorf("step %d: stored %+v, returned %+v", i, now, up[0])
		}
	}
	// A no-op store does not need a new MODSEQ, but must report the state.
	up, _, err := st.StoreFlags(c, mb, []uint32{d.UID}, store.FlagsRemove, []string{store.FlagSeen}, 0)
	must(t, err, "StoreFlags no-op")
	if len(up) != 1 || len(up[0].Flags) != 0 {
		t.Errorf("no-op StoreFlags = %+v", up)
	}
	ch, err := st.ChangesSince(c, mb, prev-1)
	must(t, err, "ChangesSince")
	if len(ch.Changed) != 1 || ch.Changed[0].UID != d.UID {
		t.Errorf("ChangesSince = %+v", ch)
	}
	_, _, err = st.StoreFlags(c, mb, []uint32{d.UID}, store.FlagsAdd, []string{`\Bogus`}, 0)
	wantErr(t, err, store.ErrInvalid, "unknown system flag")
}

func testUnchangedSince(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	d1 := deliver(t, st, a.ID, "INBOX", message(1))
	d2 := deliver(t, st, a.ID, "INBOX", message(2))
	mb := d1.MailboxID
	m1 := flagsOf(t, st, mb, d1.UID)
	// Change message 2 after message 1's MODSEQ.
	_, _, err := st.StoreFlags(c, mb, []uint32{d2.UID}, store.FlagsAdd, []string{store.FlagSeen}, 0)
	must(t, err, "StoreFlags")
	up, failed, err := st.StoreFlags(c, mb, []uint32{d1.UID, d2.UID}, store.FlagsAdd, []string{store.FlagFlagged}, m1.ModSeq)
	must(t, err, "StoreFlags unchangedSince")
	if !slices.Equal(failed, []uint32{d2.UID}) || len(up) != 1 || up[0].UID != d1.UID {
		t.Errorf("unchangedSince: updated %+v, failed %v", up, failed)
	}
	if m2 := flagsOf(t, st, mb, d2.UID); slices.Contains(m2.Flags, store.FlagFlagged) {
		t.Errorf("failed message changed anyway: %v", m2.Flags)
	}
}

func testExpunge(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	for i := range 5 {
		deliver(t, st, a.ID, "INBOX", message(i))
	}
	mb := mailbox(t, st, a.ID, "INBOX")
	before := mb.HighestModSeq
	removed, err := st.Expunge(c, mb.ID, []uint32{2, 4, 77})
	must(t, err, "Expunge")
	if !slices.Equal(removed, []uint32{2, 4}) {
		t.Errorf("Expunge removed %v", removed)
	}
	if got := listUIDs(t, st, mb.ID); !slices.Equal(got, []uint32{1, 3, 5}) {
		t.Errorf("left %v", got)
	}
	ch, err := st.ChangesSince(c, mb.ID, before)
	must(t, err, "ChangesSince")
	if !slices.Equal(ch.Vanished, []uint32{2, 4}) || len(ch.Changed) != 0 || ch.HighestModSeq <= before || ch.UIDNext != 6 {
		t.Errorf("ChangesSince(%d) = %+v", before, ch)
	}
	ch, err = st.ChangesSince(c, mb.ID, ch.HighestModSeq)
	must(t, err, "ChangesSince")
	if len(ch.Vanished) != 0 || len(ch.Changed) != 0 {
		t.Errorf("ChangesSince(highest) = %+v", ch)
	}
	ch, err = st.ChangesSince(c, mb.ID, 0)
	must(t, err, "ChangesSince 0")
	if !slices.Equal(uidsOf(ch.Changed), []uint32{1, 3, 5}) || !slices.Equal(ch.Vanished, []uint32{2, 4}) {
		t.Errorf("ChangesSince(0) = %+v", ch)
	}
	removed, err = st.Expunge(c, mb.ID, []uint32{2})
	must(t, err, "Expunge again")
	if len(removed) != 0 {
		t.Errorf("expunging an expunged UID removed %v", removed)
	}
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != int64(len(message(1))*3) {
		t.Errorf("UsedBytes = %d", acct.UsedBytes)
	}
}

func testCopyMove(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	for i := range 3 {
		deliver(t, st, a.ID, "INBOX", message(i), "Keep")
	}
	inbox := mailbox(t, st, a.ID, "INBOX")
	arch := mailbox(t, st, a.ID, "Archive")
	trash := mailbox(t, st, a.ID, "Trash")
	src, dst, err := st.Copy(c, inbox.ID, []uint32{1, 3, 50}, arch.ID)
	must(t, err, "Copy")
	if !slices.Equal(src, []uint32{1, 3}) || !slices.Equal(dst, []uint32{1, 2}) {
		t.Errorf("Copy = %v -> %v", src, dst)
	}
	in, _ := st.GetMessages(c, inbox.ID, []uint32{1, 3})
	out, _ := st.GetMessages(c, arch.ID, dst)
	if len(in) != 2 || len(out) != 2 {
		t.Fatalf("GetMessages: %d, %d", len(in), len(out))
	}
	for i := range in {
		if in[i].BlobID != out[i].BlobID || !slices.Equal(in[i].Flags, out[i].Flags) || !in[i].InternalDate.Equal(out[i].InternalDate) {
			t.Errorf("copy %d differs: %+v vs %+v", i, in[i], out[i])
		}
	}
	size := int64(len(message(0)))
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 5*size {
		t.Errorf("UsedBytes after copy = %d, want %d", acct.UsedBytes, 5*size)
	}
	checkClean(t, st)

	before := mailbox(t, st, a.ID, "INBOX").HighestModSeq
	src, dst, err = st.Move(c, inbox.ID, []uint32{2, 3}, trash.ID)
	must(t, err, "Move")
	if !slices.Equal(src, []uint32{2, 3}) || !slices.Equal(dst, []uint32{1, 2}) {
		t.Errorf("Move = %v -> %v", src, dst)
	}
	if got := listUIDs(t, st, inbox.ID); !slices.Equal(got, []uint32{1}) {
		t.Errorf("INBOX after move = %v", got)
	}
	ch, _ := st.ChangesSince(c, inbox.ID, before)
	if !slices.Equal(ch.Vanished, []uint32{2, 3}) {
		t.Errorf("vanished after move = %v", ch.Vanished)
	}
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 5*size {
		t.Errorf("UsedBytes after move = %d, want %d", acct.UsedBytes, 5*size)
	}
	_, _, err = st.Copy(c, inbox.ID, []uint32{1}, 1<<40)
	wantErr(t, err, store.ErrNoSuchMailbox, "Copy to missing mailbox")
}

func testBlobDedupeGC(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	b := newAccount(t, st, "other@example.com")
	body := message(42)
	d1 := deliver(t, st, a.ID, "INBOX", body)
	d2 := deliver(t, st, b.ID, "INBOX", body)
	m1, _ := st.GetMessages(c, d1.MailboxID, []uint32{d1.UID})
	m2, _ := st.GetMessages(c, d2.MailboxID, []uint32{d2.UID})
	if m1[0].BlobID != m2[0].BlobID {
		t.Fatalf("same body, two blob IDs: %s %s", m1[0].BlobID, m2[0].BlobID)
	}
	id := m1[0].BlobID
	checkClean(t, st)
	n, err := st.CollectGarbage(c, 0)
	must(t, err, "CollectGarbage")
	if n != 0 {
		t.Errorf("CollectGarbage removed %d referenced blobs", n)
	}
	_, err = st.Expunge(c, d1.MailboxID, []uint32{d1.UID})
	must(t, err, "Expunge")
	r, err := st.OpenBlob(c, id)
	must(t, err, "OpenBlob with one reference left")
	r.Close()
	_, err = st.Expunge(c, d2.MailboxID, []uint32{d2.UID})
	must(t, err, "Expunge")
	n, err = st.CollectGarbage(c, 0)
	must(t, err, "CollectGarbage")
	if n != 1 {
		t.Errorf("CollectGarbage removed %d, want exactly 1 (the body is stored once)", n)
	}
	_, err = st.OpenBlob(c, id)
	wantErr(t, err, store.ErrNotFound, "OpenBlob after GC")
}

func testLargeBlob(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 3<<20 + 17} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(rng.IntN(256))
		}
		blob, err := st.Spool(c, bytes.NewReader(body), 10<<20)
		must(t, err, "Spool")
		if blob.Size != int64(size) {
			t.Fatalf("Spool size %d, want %d", blob.Size, size)
		}
		ds, err := st.Deliver(c, &store.Delivery{Blob: blob, Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}})
		must(t, err, "Deliver")
		r, err := st.OpenBlob(c, blob.ID)
		must(t, err, "OpenBlob")
		if r.Size() != int64(size) {
			t.Errorf("size %d: BlobReader.Size = %d", size, r.Size())
		}
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		must(t, err, "read blob")
		if !bytes.Equal(got, body) {
			t.Errorf("size %d: body differs after round trip", size)
		}
		if size > 10 {
			part := make([]byte, 10)
			_, err := r.ReadAt(part, int64(size-10))
			if err != nil && err != io.EOF {
				t.Errorf("ReadAt: %v", err)
			}
			if !bytes.Equal(part, body[size-10:]) {
				t.Errorf("size %d: ReadAt tail differs", size)
			}
		}
		r.Close()
		_, err = st.Expunge(c, ds[0].MailboxID, []uint32{ds[0].UID})
		must(t, err, "Expunge")
	}
	n, err := st.CollectGarbage(c, 0)
	must(t, err, "CollectGarbage")
	if n != 6 {
		t.Errorf("CollectGarbage removed %d, want 6", n)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func testSpoolTooBig(t *testing.T, st store.Store) {
	for _, max := range []int64{100, 64 << 10, 1 << 20} {
		cr := &countingReader{r: io.LimitReader(zeros{}, 5<<20)}
		_, err := st.Spool(ctx(t), cr, max)
		wantErr(t, err, store.ErrTooBig, fmt.Sprintf("Spool over %d", max))
		if cr.n > max+1 {
			t.Errorf("Spool(max %d) read %d bytes", max, cr.n)
		}
		b, err := st.Spool(ctx(t), io.LimitReader(zeros{}, max), max)
		must(t, err, fmt.Sprintf("Spool of exactly %d", max))
		if b.Size != max {
			t.Errorf("size %d", b.Size)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func testQuota(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	must(t, st.SetQuota(c, a.ID, 10000), "SetQuota")
	body := strings.Repeat("x", 6000)
	d := func(enforce bool) error {
		_, err := st.Deliver(c, &store.Delivery{Blob: spool(t, st, body), EnforceQuota: enforce,
			Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}})
		return err
	}
	must(t, d(true), "first delivery under quota")
	wantErr(t, d(true), store.ErrQuota, "delivery over quota")
	mb := mailbox(t, st, a.ID, "INBOX")
	if got := listUIDs(t, st, mb.ID); len(got) != 1 {
		t.Errorf("refused delivery left messages: %v", got)
	}
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 6000 {
		t.Errorf("UsedBytes = %d, want 6000", acct.UsedBytes)
	}
	must(t, d(false), "delivery without enforcement")
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 12000 {
		t.Errorf("UsedBytes = %d, want 12000", acct.UsedBytes)
	}
	_, _, err := st.Copy(c, mb.ID, []uint32{1}, mailbox(t, st, a.ID, "Archive").ID)
	wantErr(t, err, store.ErrQuota, "Copy over quota")
	_, err = st.Expunge(c, mb.ID, []uint32{1, 2})
	must(t, err, "Expunge")
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 0 {
		t.Errorf("UsedBytes after expunge = %d", acct.UsedBytes)
	}
	must(t, st.SetQuota(c, a.ID, 0), "SetQuota unlimited")
	must(t, d(true), "delivery with no quota")
}

func testConcurrentDeliver(t *testing.T, st store.Store) {
	a := newAccount(t, st, "user@example.com")
	const n = 64
	uids := make([]uint32, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			b, err := st.Spool(ctx(t), strings.NewReader(message(i)), 1<<20)
			if err != nil {
				errs <- err
				return
			}
			d, err := st.Deliver(ctx(t), &store.Delivery{Blob: b,
				Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}})
			if err != nil {
				errs <- err
				return
			}
			uids[i] = d[0].UID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Deliver: %v", err)
	}
	seen := map[uint32]bool{}
	for _, u := range uids {
		if u == 0 || seen[u] {
			t.Errorf("UID %d duplicate or missing", u)
		}
		seen[u] = true
	}
	mb := mailbox(t, st, a.ID, "INBOX")
	if got := listUIDs(t, st, mb.ID); len(got) != n {
		t.Errorf("%d messages listed, want %d", len(got), n)
	}
	st2, err := st.MailboxStatus(ctx(t), mb.ID)
	must(t, err, "MailboxStatus")
	if st2.Messages != n || st2.Unseen != n || st2.UIDNext != n+1 {
		t.Errorf("MailboxStatus = %+v", st2)
	}
}

// testFailingDeliveryIsolated runs good and bad deliveries at once: the
// bad ones (missing mailbox, over quota) fail, the good ones all land.
func testFailingDeliveryIsolated(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	full := newAccount(t, st, "full@example.com")
	must(t, st.SetQuota(c, full.ID, 1), "SetQuota")
	var wg sync.WaitGroup
	const n = 30
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			tg := store.Target{AccountID: a.ID, Mailbox: "INBOX"}
			switch i % 3 {
			case 1:
				tg.Mailbox = "Missing"
			case 2:
				tg.AccountID = full.ID
			}
			b, err := st.Spool(c, strings.NewReader(message(i)), 1<<20)
			if err == nil {
				_, err = st.Deliver(c, &store.Delivery{Blob: b, EnforceQuota: true, Local: []store.Target{tg}})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch i % 3 {
		case 0:
			must(t, err, "good delivery")
		case 1:
			wantErr(t, err, store.ErrNoSuchMailbox, "delivery to missing mailbox")
		case 2:
			wantErr(t, err, store.ErrQuota, "delivery over quota")
		}
	}
	if got := listUIDs(t, st, mailbox(t, st, a.ID, "INBOX").ID); len(got) != n/3 {
		t.Errorf("%d good deliveries landed, want %d", len(got), n/3)
	}
}

func testQueue(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	start := time.Now().Add(-time.Second)
	ds, err := st.Deliver(c, &store.Delivery{
		Blob:  spool(t, st, message(1)),
		From:  "user@example.com",
		Local: []store.Target{{AccountID: a.ID, Mailbox: "Sent", Flags: []string{store.FlagSeen}}},
		Remote: []store.QueueRecipient{
			{Address: "a@remote.example", Notify: "FAILURE"},
			{Address: "b@other.example"},
			{Address: "c@remote.example", Original: "c-alias@example.com"},
		},
		DSN: store.DSN{Ret: "HDRS", EnvID: "env1"},
	})
	must(t, err, "Deliver")
	if len(ds) != 1 {
		t.Fatalf("Delivered %v", ds)
	}
	q, err := st.ListQueue(c)
	must(t, err, "ListQueue")
	if len(q) != 2 {
		t.Fatalf("ListQueue = %d entries, want 2 (one per domain)", len(q))
	}
	byDomain := map[string]store.QueueEntry{}
	for _, e := range q {
		byDomain[e.Domain] = e
	}
	r := byDomain["remote.example"]
	if len(r.Recipients) != 2 || r.Recipients[0].Address != "a@remote.example" || r.Recipients[0].Notify != "FAILURE" ||
		r.Recipients[1].Original != "c-alias@example.com" || r.From != "user@example.com" || r.DSN.EnvID != "env1" ||
		r.NextAttempt.Before(start) || r.BlobID == "" {
		t.Errorf("queue entry = %+v", r)
	}
	if len(byDomain["other.example"].Recipients) != 1 {
		t.Errorf("other.example entry = %+v", byDomain["other.example"])
	}
	e, evs, err := st.GetQueueEntry(c, r.ID)
	must(t, err, "GetQueueEntry")
	if e.ID != r.ID || len(evs) != 1 || evs[0].Kind != "queued" {
		t.Errorf("GetQueueEntry = %+v, %+v", e, evs)
	}
	must(t, st.AddEvent(c, store.Event{QueueID: r.ID, Kind: "attempt", Detail: "451 try later"}), "AddEvent")
	_, evs, _ = st.GetQueueEntry(c, r.ID)
	if len(evs) != 2 || evs[1].Kind != "attempt" || evs[1].Time.IsZero() {
		t.Errorf("events = %+v", evs)
	}
	_, _, err = st.GetQueueEntry(c, 1<<40)
	wantErr(t, err, store.ErrNotFound, "GetQueueEntry missing")
	rd, err := st.OpenBlob(c, r.BlobID)
	must(t, err, "OpenBlob of queued message")
	rd.Close()

	// Remote only.
	_, err = st.Deliver(c, &store.Delivery{Blob: spool(t, st, message(2)), Remote: []store.QueueRecipient{{Address: "x@third.example"}}})
	must(t, err, "Deliver remote only")
	if q, _ := st.ListQueue(c); len(q) != 3 {
		t.Errorf("ListQueue = %d entries, want 3", len(q))
	}
}

func testSubscribe(t *testing.T, st store.Store) {
	a := newAccount(t, st, "user@example.com")
	b := newAccount(t, st, "other@example.com")
	chA, cancelA := st.Subscribe(a.ID)
	defer cancelA()
	chB, cancelB := st.Subscribe(b.ID)
	deliver(t, st, a.ID, "INBOX", message(1))
	select {
	case <-chA:
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber not signalled after delivery")
	}
	select {
	case <-chB:
		t.Error("other account's subscriber signalled")
	default:
	}
	// Many changes coalesce into one pending signal and never block.
	for i := range 3 {
		deliver(t, st, a.ID, "INBOX", message(i+2))
	}
	<-chA
	mb := mailbox(t, st, a.ID, "INBOX")
	_, _, err := st.StoreFlags(ctx(t), mb.ID, []uint32{1}, store.FlagsAdd, []string{store.FlagSeen}, 0)
	must(t, err, "StoreFlags")
	select {
	case <-chA:
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber not signalled after StoreFlags")
	}
	cancelB()
	cancelB()
	deliver(t, st, b.ID, "INBOX", message(9))
}

func testLock(t *testing.T, st store.Store) {
	rel, err := st.Lock(ctx(t), "pop3:1")
	must(t, err, "Lock")
	_, err = st.Lock(ctx(t), "pop3:1")
	wantErr(t, err, store.ErrInUse, "Lock held")
	rel2, err := st.Lock(ctx(t), "pop3:2")
	must(t, err, "Lock other name")
	rel2()
	rel()
	rel3, err := st.Lock(ctx(t), "pop3:1")
	must(t, err, "Lock after release")
	rel3()
}

func testGetMessages(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	date := time.Date(2024, 2, 29, 12, 30, 0, 0, time.UTC)
	body := message(7)
	info := &msginfo.Info{Size: int64(len(body)), Envelope: msginfo.Envelope{Subject: "test 7",
		From: []msginfo.Address{{Name: "A", Mailbox: "a", Host: "example.org"}}},
		Body: msginfo.Part{Type: "text", Subtype: "plain", End: int64(len(body))}, Preview: "body 7"}
	ds, err := st.Deliver(c, &store.Delivery{Blob: spool(t, st, body), Info: info,
		Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX", InternalDate: date, Flags: []string{store.FlagDraft}}}})
	must(t, err, "Deliver")
	ms, err := st.GetMessages(c, ds[0].MailboxID, []uint32{ds[0].UID, 5000})
	must(t, err, "GetMessages")
	if len(ms) != 1 {
		t.Fatalf("GetMessages = %d", len(ms))
	}
	m := ms[0]
	if !m.InternalDate.Equal(date) || m.Size != int64(len(body)) || m.MailboxID != ds[0].MailboxID ||
		m.Info == nil || m.Info.Envelope.Subject != "test 7" || m.Info.Preview != "body 7" ||
		len(m.Info.Envelope.From) != 1 || !slices.Equal(m.Flags, []string{store.FlagDraft}) {
		t.Errorf("GetMessages = %+v (info %+v)", m, m.Info)
	}
	st2, err := st.MailboxStatus(c, ds[0].MailboxID)
	must(t, err, "MailboxStatus")
	if st2.Messages != 1 || st2.Unseen != 1 || st2.Size != int64(len(body)) || st2.Deleted != 0 {
		t.Errorf("MailboxStatus = %+v", st2)
	}
	_, err = st.MailboxStatus(c, 1<<40)
	wantErr(t, err, store.ErrNoSuchMailbox, "MailboxStatus missing")
	_, err = st.ListMessages(c, 1<<40)
	wantErr(t, err, store.ErrNoSuchMailbox, "ListMessages missing")
}
