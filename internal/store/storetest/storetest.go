// Package storetest is the conformance suite every store.Store
// implementation must pass. An implementation's test calls Run with a
// function that opens a fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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
		{"SCRAMKeys", testSCRAM},
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
		{"DeliverAll", testDeliverAll},
		{"Queue", testQueue},
		{"Subscribe", testSubscribe},
		{"Lock", testLock},
		{"GetMessages", testGetMessages},
		{"MetaSizes", testMetaSizes},
		{"IDsNotReused", testIDsNotReused},
		{"LeaseQueue", testLeaseQueue},
		{"LeasePerDomain", testLeasePerDomain},
		{"UpdateQueueEntry", testUpdateQueueEntry},
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
