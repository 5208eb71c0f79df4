package storetest

import (
	"slices"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

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
