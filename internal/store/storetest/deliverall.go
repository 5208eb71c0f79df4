package storetest

import (
	"strings"
	"sync"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

// testDeliverAll checks DeliverAll's contract (IMAP MULTIAPPEND, RFC
// 3502): a group whose last delivery fails leaves nothing, whether the
// failure is a missing mailbox or the quota reached by the group's total;
// a good group gets consecutive UIDs in its order, also while single
// deliveries commit around it.
func testDeliverAll(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	inbox := mailbox(t, st, a.ID, "INBOX")
	group := func(mailboxes ...string) []*store.Delivery {
		ds := make([]*store.Delivery, len(mailboxes))
		for i, mb := range mailboxes {
			ds[i] = &store.Delivery{Blob: spool(t, st, message(100+i)), EnforceQuota: true,
				Local: []store.Target{{AccountID: a.ID, Mailbox: mb, Flags: []string{`\Seen`}}}}
		}
		return ds
	}
	nothingLeft := func(what string) {
		t.Helper()
		if got := listUIDs(t, st, inbox.ID); len(got) != 0 {
			t.Errorf("%s: messages left behind: %v", what, got)
		}
		if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 0 {
			t.Errorf("%s: UsedBytes = %d, want 0", what, acct.UsedBytes)
		}
	}

	_, err := st.DeliverAll(c, group("INBOX", "INBOX", "Missing"))
	wantErr(t, err, store.ErrNoSuchMailbox, "DeliverAll with a missing mailbox last")
	nothingLeft("missing mailbox")

	must(t, st.SetQuota(c, a.ID, int64(2*len(message(100))+len(message(101))/2)), "SetQuota")
	_, err = st.DeliverAll(c, group("INBOX", "INBOX", "INBOX"))
	wantErr(t, err, store.ErrQuota, "DeliverAll over quota in total")
	nothingLeft("over quota")
	must(t, st.SetQuota(c, a.ID, 0), "SetQuota unlimited")

	// Single deliveries commit around the group, in the same batches.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			b, err := st.Spool(c, strings.NewReader(message(i)), 1<<20)
			if err == nil {
				_, err = st.Deliver(c, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: a.ID, Mailbox: "Archive"}}})
			}
			if err != nil {
				t.Errorf("concurrent Deliver: %v", err)
			}
		})
	}
	out, err := st.DeliverAll(c, group("INBOX", "INBOX", "INBOX"))
	wg.Wait()
	must(t, err, "DeliverAll")
	if len(out) != 3 {
		t.Fatalf("DeliverAll returned %d results, want 3", len(out))
	}
	// The failed groups took no UIDs either: the mailbox starts at 1.
	for i, d := range out {
		if len(d) != 1 || d[0].MailboxID != inbox.ID || d[0].UIDValidity != inbox.UIDValidity || d[0].UID != uint32(i+1) {
			t.Errorf("result %d = %+v, want UID %d in mailbox %d", i, d, i+1, inbox.ID)
		}
	}
	msgs, err := st.GetMessages(c, inbox.ID, []uint32{1, 2, 3})
	must(t, err, "GetMessages")
	if len(msgs) != 3 {
		t.Fatalf("%d messages filed, want 3", len(msgs))
	}
	for _, m := range msgs {
		if len(m.Flags) != 1 || m.Flags[0] != `\Seen` {
			t.Errorf("UID %d flags %v, want [\\Seen]", m.UID, m.Flags)
		}
	}

	_, err = st.DeliverAll(c, nil)
	wantErr(t, err, store.ErrInvalid, "DeliverAll of nothing")
}
