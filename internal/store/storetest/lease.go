package storetest

// The relay's side of the queue: LeaseQueue, UpdateQueueEntry,
// RemoveQueueEntry, RetryQueueEntry, ReleaseLeases, QueueEvents.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// queueTo delivers one message from a@here.test to remote recipients
// (one queue entry per domain).
func queueTo(t *testing.T, st store.Store, rcpts ...string) {
	t.Helper()
	b, err := st.Spool(ctx(t), strings.NewReader("Subject: hi\r\n\r\nbody\r\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d := &store.Delivery{Blob: b, From: "a@here.test"}
	for _, r := range rcpts {
		d.Remote = append(d.Remote, store.QueueRecipient{Address: r})
	}
	if _, err := st.Deliver(ctx(t), d); err != nil {
		t.Fatal(err)
	}
}

func lease(t *testing.T, st store.Store, req store.LeaseRequest) []store.QueueEntry {
	t.Helper()
	if req.For == 0 {
		req.For = time.Minute
	}
	if req.Max == 0 {
		req.Max = 10
	}
	got, err := st.LeaseQueue(ctx(t), req)
	if err != nil {
		t.Fatalf("LeaseQueue(%+v): %v", req, err)
	}
	return got
}

func testLeaseQueue(t *testing.T, st store.Store) {
	queueTo(t, st, "x@one.test", "y@two.test", "z@one.test")
	now := time.Now().Add(time.Second) // past the entries' creation
	got := lease(t, st, store.LeaseRequest{Owner: "w1", Now: now, Max: 1})
	if len(got) != 1 {
		t.Fatalf("leased %d, want 1", len(got))
	}
	e := got[0]
	if e.Domain != "one.test" || len(e.Recipients) != 2 || e.LeaseOwner != "w1" || e.From != "a@here.test" {
		t.Errorf("leased %+v", e)
	}
	// A live lease is not handed out again; the other entry is.
	got = lease(t, st, store.LeaseRequest{Owner: "w2", Now: now})
	if len(got) != 1 || got[0].ID == e.ID {
		t.Fatalf("second lease: %+v", got)
	}
	if got := lease(t, st, store.LeaseRequest{Owner: "w3", Now: now}); len(got) != 0 {
		t.Fatalf("third lease took %d", len(got))
	}
	// Expired leases are taken over.
	later := now.Add(2 * time.Minute)
	if got := lease(t, st, store.LeaseRequest{Owner: "w3", Now: later}); len(got) != 2 {
		t.Fatalf("lease after expiry took %d, want 2", len(got))
	}
	// The old holder lost it.
	err := st.UpdateQueueEntry(ctx(t), store.QueueUpdate{ID: e.ID, Owner: "w1"})
	wantErr(t, err, store.ErrNotFound, "update by a lost lease")
	// A restarted w3 takes its leases back at once.
	if n, err := st.ReleaseLeases(ctx(t), "w3"); err != nil || n != 2 {
		t.Fatalf("ReleaseLeases: %d %v", n, err)
	}
	if got := lease(t, st, store.LeaseRequest{Owner: "w3", Now: later}); len(got) != 2 {
		t.Fatalf("released entries leased %d, want 2", len(got))
	}
	// Not due yet: nothing.
	queueTo(t, st, "q@three.test")
	if got := lease(t, st, store.LeaseRequest{Owner: "w4", Now: now.Add(-time.Hour)}); len(got) != 0 {
		t.Errorf("leased %d entries not yet due", len(got))
	}
	if _, err := st.LeaseQueue(ctx(t), store.LeaseRequest{Now: now, Max: 1, For: time.Minute}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("lease without owner: %v", err)
	}
}

func testLeasePerDomain(t *testing.T, st store.Store) {
	for range 3 {
		queueTo(t, st, "x@one.test")
	}
	queueTo(t, st, "y@two.test")
	now := time.Now().Add(time.Second)
	got := lease(t, st, store.LeaseRequest{Owner: "w", Now: now, PerDomain: 2, Busy: map[string]int{"one.test": 1}})
	per := map[string]int{}
	for _, e := range got {
		per[e.Domain]++
	}
	if per["one.test"] != 1 || per["two.test"] != 1 {
		t.Errorf("leased per domain %v, want one.test 1 (1 busy of 2), two.test 1", per)
	}
	got = lease(t, st, store.LeaseRequest{Owner: "w", Now: now, PerDomain: 2})
	if len(got) != 2 {
		t.Errorf("then leased %d, want the 2 left of one.test", len(got))
	}
}

func testUpdateQueueEntry(t *testing.T, st store.Store) {
	queueTo(t, st, "x@one.test", "y@two.test", "z@one.test")
	now := time.Now().Add(time.Second)
	got := lease(t, st, store.LeaseRequest{Owner: "w", Now: now})
	if len(got) != 2 {
		t.Fatalf("leased %d", len(got))
	}
	one, two := got[0], got[1]
	next := now.Add(5 * time.Minute).Truncate(time.Microsecond)
	err := st.UpdateQueueEntry(ctx(t), store.QueueUpdate{
		ID: one.ID, Owner: "w", Remaining: one.Recipients[1:], NextAttempt: next, LastError: "451 later",
		Events: []store.Event{{Kind: "attempt", Detail: "to mx.one.test"}, {Kind: "deferred", Detail: "451 later"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, evs, err := st.GetQueueEntry(ctx(t), one.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Attempts != 1 || !e.NextAttempt.Equal(next) || e.LastError != "451 later" || e.LeaseOwner != "" ||
		len(e.Recipients) != 1 || e.Recipients[0].Address != "z@one.test" {
		t.Errorf("after deferral: %+v", e)
	}
	if len(evs) != 3 || evs[0].Kind != "queued" || evs[1].Kind != "attempt" || evs[2].Kind != "deferred" {
		t.Errorf("events: %+v", evs)
	}
	// Done with the other: the entry goes, its journey stays, and the
	// body survives garbage collection while the first entry holds it.
	err = st.UpdateQueueEntry(ctx(t), store.QueueUpdate{ID: two.ID, Owner: "w",
		Events: []store.Event{{Kind: "delivered", Detail: "250 ok"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = st.GetQueueEntry(ctx(t), two.ID)
	wantErr(t, err, store.ErrNotFound, "delivered entry")
	if evs, err := st.QueueEvents(ctx(t), two.ID); err != nil || len(evs) != 2 || evs[1].Kind != "delivered" {
		t.Errorf("journey of the delivered entry: %+v %v", evs, err)
	}
	checkClean(t, st)
	if _, err := st.CollectGarbage(ctx(t), 0); err != nil {
		t.Fatal(err)
	}
	r, err := st.OpenBlob(ctx(t), one.BlobID)
	if err != nil {
		t.Fatalf("queued body collected: %v", err)
	}
	r.Close()
	// Retry makes it due now; remove drops it and its body reference.
	if err := st.RetryQueueEntry(ctx(t), one.ID, now); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, st, store.LeaseRequest{Owner: "w", Now: now}); len(got) != 1 || got[0].ID != one.ID {
		t.Fatalf("retried entry not leased: %+v", got)
	}
	if err := st.RemoveQueueEntry(ctx(t), one.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, st.RemoveQueueEntry(ctx(t), one.ID), store.ErrNotFound, "second remove")
	wantErr(t, st.RetryQueueEntry(ctx(t), one.ID, now), store.ErrNotFound, "retry of a removed entry")
	checkClean(t, st)
	if n, err := st.CollectGarbage(ctx(t), 0); err != nil || n != 1 {
		t.Errorf("CollectGarbage after removal: %d %v", n, err)
	}
	if q, _ := st.ListQueue(ctx(t)); len(q) != 0 {
		t.Errorf("queue not empty: %+v", q)
	}
}
