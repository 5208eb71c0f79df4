package storetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

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
	// ListMessages reports the same flags as GetMessages.
	_, _, err = st.StoreFlags(c, mb, []uint32{d.UID}, store.FlagsReplace, []string{store.FlagSeen, "Kw2", "kw1"}, 0)
	must(t, err, "StoreFlags")
	ms, err := st.ListMessages(c, mb)
	must(t, err, "ListMessages")
	if want := []string{store.FlagSeen, "kw1", "Kw2"}; len(ms) != 1 || !slices.Equal(ms[0].Flags, want) {
		t.Errorf("ListMessages = %+v, want flags %q", ms, want)
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

// ListMessages and ChangesSince report each message's size, so POP3 can
// list a maildrop without loading every message.
func testMetaSizes(t *testing.T, st store.Store) {
	a := newAccount(t, st, "sizes@example.com")
	bodies := []string{"Subject: a\r\n\r\nshort\r\n", "Subject: b\r\n\r\n" + strings.Repeat("long line\r\n", 50)}
	for _, b := range bodies {
		deliver(t, st, a.ID, "INBOX", b)
	}
	mb := mailbox(t, st, a.ID, "INBOX")
	metas, err := st.ListMessages(ctx(t), mb.ID)
	must(t, err, "ListMessages")
	ch, err := st.ChangesSince(ctx(t), mb.ID, 0)
	must(t, err, "ChangesSince")
	for i, b := range bodies {
		if metas[i].Size != int64(len(b)) {
			t.Errorf("ListMessages size of message %d = %d, want %d", i, metas[i].Size, len(b))
		}
		if ch.Changed[i].Size != int64(len(b)) {
			t.Errorf("ChangesSince size of message %d = %d, want %d", i, ch.Changed[i].Size, len(b))
		}
	}
}
