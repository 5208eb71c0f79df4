package sqlite

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// queueTwo delivers one message to two remote domains (two queue entries)
// and returns the store.
func queueTwo(t *testing.T) *Store {
	t.Helper()
	s := openTest(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	b, err := s.Spool(ctx, strings.NewReader("Subject: hi\r\n\r\nbody\r\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Deliver(ctx, &store.Delivery{Blob: b, From: "a@here.test", Remote: []store.QueueRecipient{
		{Address: "x@one.test"}, {Address: "y@two.test"}, {Address: "z@one.test"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkStore(t *testing.T, s *Store) {
	t.Helper()
	problems, err := s.Check(t.Context())
	if err != nil || len(problems) > 0 {
		t.Fatalf("Check: %v %v", problems, err)
	}
}

func TestLeaseQueue(t *testing.T) {
	s := queueTwo(t)
	ctx := t.Context()
	now := time.Now()
	got, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w1", Now: now, Max: 1, For: time.Minute})
	if err != nil || len(got) != 1 {
		t.Fatalf("LeaseQueue: %v %v", got, err)
	}
	e := got[0]
	if e.Domain != "one.test" || len(e.Recipients) != 2 || e.LeaseOwner != "w1" || e.From != "a@here.test" {
		t.Errorf("leased %+v", e)
	}
	// The leased entry is not handed out again while the lease lives.
	got2, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w2", Now: now, Max: 10, For: time.Minute})
	if err != nil || len(got2) != 1 || got2[0].ID == e.ID {
		t.Fatalf("second LeaseQueue: %v %v", got2, err)
	}
	// Entries not yet due are not leased either.
	if got3, _ := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w3", Now: now, Max: 10, For: time.Minute}); len(got3) != 0 {
		t.Fatalf("third LeaseQueue leased %d", len(got3))
	}
	// Per-domain limits and skipped domains.
	if err := s.RetryQueueEntry(ctx, e.ID, now); err != nil {
		t.Fatal(err)
	}
	s.wdb.Exec(`UPDATE queue SET lease_until = 0`)
	got5, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w4", Now: now, Max: 10, For: time.Minute, PerDomain: 2, Busy: map[string]int{"one.test": 2}})
	if err != nil || len(got5) != 1 || got5[0].Domain != "two.test" {
		t.Fatalf("LeaseQueue skipping one.test: %v %v", got5, err)
	}
	s.wdb.Exec(`UPDATE queue SET lease_until = 0`)
	got6, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w4", Now: now, Max: 10, For: time.Minute, PerDomain: 1})
	if err != nil || len(got6) != 2 || got6[0].Domain == got6[1].Domain {
		t.Fatalf("LeaseQueue one per domain: %v %v", got6, err)
	}
	s.wdb.Exec(`UPDATE queue SET lease_until = 0`)
	// An expired lease is taken over.
	later := now.Add(2 * time.Minute)
	got4, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w3", Now: later, Max: 10, For: time.Minute})
	if err != nil || len(got4) != 2 {
		t.Fatalf("LeaseQueue after expiry: %v %v", got4, err)
	}
	// A restarted w3 takes its leases back at once.
	if n, err := s.ReleaseLeases(ctx, "w3"); err != nil || n != 2 {
		t.Fatalf("ReleaseLeases: %d %v", n, err)
	}
	if got, _ := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w3", Now: later, Max: 10, For: time.Minute}); len(got) != 2 {
		t.Fatalf("released entries not leased again: %v", got)
	}
	// The old holder lost it.
	err = s.UpdateQueueEntry(ctx, store.QueueUpdate{ID: e.ID, Owner: "w1"})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update by a lost lease: %v", err)
	}
}

func TestUpdateQueueEntry(t *testing.T) {
	s := queueTwo(t)
	ctx := t.Context()
	now := time.Now()
	got, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w", Now: now, Max: 10, For: time.Minute})
	if err != nil || len(got) != 2 {
		t.Fatalf("LeaseQueue: %v %v", got, err)
	}
	one, two := got[0], got[1]
	next := now.Add(5 * time.Minute)
	err = s.UpdateQueueEntry(ctx, store.QueueUpdate{
		ID: one.ID, Owner: "w", Remaining: one.Recipients[1:], NextAttempt: next, LastError: "451 later",
		Events: []store.Event{{Kind: "attempt", Detail: "to mx.one.test"}, {Kind: "deferred", Detail: "451 later"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, evs, err := s.GetQueueEntry(ctx, one.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Attempts != 1 || !e.NextAttempt.Equal(next) || e.LastError != "451 later" || e.LeaseOwner != "" ||
		len(e.Recipients) != 1 || e.Recipients[0].Address != "z@one.test" {
		t.Errorf("after defer: %+v", e)
	}
	if len(evs) != 3 || evs[0].Kind != "queued" || evs[1].Kind != "attempt" || evs[2].Kind != "deferred" {
		t.Errorf("events: %+v", evs)
	}
	// Done with the other: the entry goes, its events stay, the body
	// survives garbage collection while the first entry holds it.
	if err := s.UpdateQueueEntry(ctx, store.QueueUpdate{ID: two.ID, Owner: "w",
		Events: []store.Event{{Kind: "delivered", Detail: "250 ok"}}}); err != nil {
		t.Fatal(err)
	}
	if _, evs, err := s.GetQueueEntry(ctx, two.ID); !errors.Is(err, store.ErrNotFound) || evs != nil {
		t.Errorf("delivered entry still there: %v", err)
	}
	if evs, err := s.QueueEvents(ctx, two.ID); err != nil || len(evs) != 2 || evs[1].Kind != "delivered" {
		t.Errorf("journey of the delivered entry: %+v %v", evs, err)
	}
	checkStore(t, s)
	if _, err := s.CollectGarbage(ctx, 0); err != nil {
		t.Fatal(err)
	}
	r, err := s.OpenBlob(ctx, one.BlobID)
	if err != nil {
		t.Fatalf("queued body collected: %v", err)
	}
	r.Close()
	// Retry makes it due now; remove drops it and the body.
	if err := s.RetryQueueEntry(ctx, one.ID, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w", Now: now, Max: 10, For: time.Minute}); len(got) != 1 || got[0].ID != one.ID {
		t.Fatalf("retried entry not leased: %v", got)
	}
	if err := s.RemoveQueueEntry(ctx, one.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveQueueEntry(ctx, one.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	if err := s.RetryQueueEntry(ctx, one.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("retry of removed: %v", err)
	}
	checkStore(t, s)
	if n, err := s.CollectGarbage(ctx, 0); err != nil || n != 1 {
		t.Errorf("CollectGarbage after removal: %d %v", n, err)
	}
	if q, _ := s.ListQueue(ctx); len(q) != 0 {
		t.Errorf("queue not empty: %v", q)
	}
}
