package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// Several stores on one schema behave as several Tern nodes on one
// database: these tests cover what crosses between them.

// queueTwo delivers one message to two remote domains (two queue entries).
func queueTwo(t *testing.T) *Store {
	t.Helper()
	s := openTest(t)
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

func TestLeaseQueue(t *testing.T) {
	s := queueTwo(t)
	ctx := t.Context()
	unlease := func() {
		if _, err := s.pool.Exec(ctx, `UPDATE queue SET lease_until = 0`); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	got, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w1", Now: now, Max: 1, For: time.Minute})
	if err != nil || len(got) != 1 {
		t.Fatalf("LeaseQueue: %v %v", got, err)
	}
	e := got[0]
	if e.Domain != "one.test" || len(e.Recipients) != 2 || e.LeaseOwner != "w1" || e.From != "a@here.test" ||
		!e.LeaseUntil.Equal(now.Add(time.Minute)) {
		t.Errorf("leased %+v", e)
	}
	got2, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w2", Now: now, Max: 10, For: time.Minute})
	if err != nil || len(got2) != 1 || got2[0].ID == e.ID {
		t.Fatalf("second LeaseQueue: %v %v", got2, err)
	}
	if got3, _ := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w3", Now: now, Max: 10, For: time.Minute}); len(got3) != 0 {
		t.Fatalf("third LeaseQueue leased %d", len(got3))
	}
	if err := s.RetryQueueEntry(ctx, e.ID, now); err != nil {
		t.Fatal(err)
	}
	unlease()
	got5, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w4", Now: now, Max: 10, For: time.Minute, PerDomain: 2, Busy: map[string]int{"one.test": 2}})
	if err != nil || len(got5) != 1 || got5[0].Domain != "two.test" {
		t.Fatalf("LeaseQueue skipping one.test: %v %v", got5, err)
	}
	unlease()
	got6, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w4", Now: now, Max: 10, For: time.Minute, PerDomain: 1})
	if err != nil || len(got6) != 2 || got6[0].Domain == got6[1].Domain {
		t.Fatalf("LeaseQueue one per domain: %v %v", got6, err)
	}
	unlease()
	later := now.Add(2 * time.Minute)
	got4, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w3", Now: later, Max: 10, For: time.Minute})
	if err != nil || len(got4) != 2 {
		t.Fatalf("LeaseQueue after expiry: %v %v", got4, err)
	}
	if n, err := s.ReleaseLeases(ctx, "w3"); err != nil || n != 2 {
		t.Fatalf("ReleaseLeases: %d %v", n, err)
	}
	if got, _ := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "w3", Now: later, Max: 10, For: time.Minute}); len(got) != 2 {
		t.Fatalf("released entries not leased again: %v", got)
	}
	err = s.UpdateQueueEntry(ctx, store.QueueUpdate{ID: e.ID, Owner: "w1"})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update by a lost lease: %v", err)
	}
	if _, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: "", Max: 1, For: time.Minute}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("LeaseQueue without owner: %v", err)
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
		ID: one.ID, Owner: "w", Remaining: one.Recipients[1:], NextAttempt: next, LastError: "451 later\x00\xff",
		Events: []store.Event{{Kind: "attempt", Detail: "to mx.one.test"}, {Kind: "deferred", Detail: "451 later"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, evs, err := s.GetQueueEntry(ctx, one.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Attempts != 1 || !e.NextAttempt.Equal(next) || e.LastError != "451 later\uFFFD" || e.LeaseOwner != "" ||
		len(e.Recipients) != 1 || e.Recipients[0].Address != "z@one.test" {
		t.Errorf("after defer: %+v", e)
	}
	if len(evs) != 3 || evs[0].Kind != "queued" || evs[1].Kind != "attempt" || evs[2].Kind != "deferred" {
		t.Errorf("events: %+v", evs)
	}
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

// TestLeaseAcrossNodes has three nodes lease from one queue as fast as
// they can: every entry is leased exactly once.
func TestLeaseAcrossNodes(t *testing.T) {
	schema := newSchema(t)
	nodes := []*Store{openSchema(t, schema), openSchema(t, schema), openSchema(t, schema)}
	ctx := t.Context()
	const n = 300
	for i := range n {
		b, err := nodes[0].Spool(ctx, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\n", i)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		rcpt := fmt.Sprintf("r@d%d.test", i%7)
		if _, err := nodes[0].Deliver(ctx, &store.Delivery{Blob: b, Remote: []store.QueueRecipient{{Address: rcpt}}}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	leased := map[int64]string{}
	var wg sync.WaitGroup
	for i, s := range nodes {
		for w := range 3 {
			owner := fmt.Sprintf("node%d/%d", i, w)
			wg.Go(func() {
				for {
					got, err := s.LeaseQueue(ctx, store.LeaseRequest{Owner: owner, Now: time.Now(), Max: 7, PerDomain: 2, For: time.Hour})
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, e := range got {
						if prev, ok := leased[e.ID]; ok {
							t.Errorf("entry %d leased by %s and %s", e.ID, prev, owner)
						}
						leased[e.ID] = owner
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(leased) != n {
		t.Errorf("%d entries leased, want %d", len(leased), n)
	}
	// A dead node's leases expire and another node takes them over.
	got, err := nodes[1].LeaseQueue(ctx, store.LeaseRequest{Owner: "late", Now: time.Now().Add(2 * time.Hour), Max: n, For: time.Hour})
	if err != nil || len(got) != n {
		t.Errorf("takeover after expiry: %d entries, %v", len(got), err)
	}
}

// TestSubscribeAcrossNodes: a change committed through one node wakes
// the subscribers of the account on the other.
func TestSubscribeAcrossNodes(t *testing.T) {
	schema := newSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	ctx := t.Context()
	account := setupAccount(t, a)
	other := setupAccount(t, a)
	ch, cancel := b.Subscribe(account)
	defer cancel()
	chOther, cancelOther := b.Subscribe(other)
	defer cancelOther()
	drain := func() {
		time.Sleep(50 * time.Millisecond)
		for {
			select {
			case <-ch:
			case <-chOther:
			default:
				return
			}
		}
	}
	drain()
	var waits []time.Duration
	for i := range 10 {
		blob, err := a.Spool(ctx, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\n", i)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		// Timed from before the delivery: the signal may come before
		// Deliver returns.
		start := time.Now()
		if _, err := a.Deliver(ctx, &store.Delivery{Blob: blob, Local: []store.Target{{AccountID: account, Mailbox: "INBOX"}}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			waits = append(waits, time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatal("node B not signalled of a delivery on node A")
		}
	}
	// The median must be within 100 ms; one slow signal on a loaded test
	// machine is tolerated up to 1 s.
	slices.Sort(waits)
	t.Logf("delivery on node A until signal on node B: median %v, slowest %v", waits[len(waits)/2], waits[len(waits)-1])
	if waits[len(waits)/2] > 100*time.Millisecond || waits[len(waits)-1] > time.Second {
		t.Errorf("cross-node signals took %v, want < 100ms", waits)
	}
	select {
	case <-chOther:
		t.Error("other account's subscriber signalled")
	default:
	}

	// The listener survives losing its connection; once back, it
	// signals everyone (changes may have gone unheard meanwhile) and
	// hears new changes.
	if _, err := a.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%' AND query LIKE '%'||$1||'%'`, b.channel); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal after the listener reconnected")
	}
	drain()
	blob, _ := a.Spool(ctx, strings.NewReader("Subject: after\r\n\r\n"), 1<<20)
	if _, err := a.Deliver(ctx, &store.Delivery{Blob: blob, Local: []store.Target{{AccountID: account, Mailbox: "INBOX"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("not signalled after the listener reconnected")
	}
}

// TestLockAcrossNodes: a named lock held on one node is refused on the
// other, and freed when its holder's session dies.
func TestLockAcrossNodes(t *testing.T) {
	schema := newSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	ctx := t.Context()
	rel, err := a.Lock(ctx, "pop3:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx, "pop3:1"); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("lock held on the other node: %v", err)
	}
	rel()
	relB, err := b.Lock(ctx, "pop3:1")
	if err != nil {
		t.Fatalf("lock after release on the other node: %v", err)
	}
	relB()

	// A node that dies (its session ends) frees its locks.
	if _, err := a.Lock(ctx, "pop3:2"); err != nil {
		t.Fatal(err)
	}
	var pid uint32
	a.locks.mu.Lock()
	pid = a.locks.conn.PgConn().PID()
	a.locks.mu.Unlock()
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rel, err := b.Lock(ctx, "pop3:2")
		if err == nil {
			rel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock of a dead session not freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Locks in another schema (another Tern installation) are separate.
	c := openTest(t)
	relA, err := a.Lock(ctx, "pop3:3")
	if err != nil {
		t.Fatal(err)
	}
	defer relA()
	relC, err := c.Lock(ctx, "pop3:3")
	if err != nil {
		t.Fatalf("lock of the same name in another schema: %v", err)
	}
	relC()
}

// TestLockKeepAlive: when the session holding a node's locks dies, the
// keep-alive (run with the listener's pings) reconnects and takes the
// locks back, so the other node is refused again.
func TestLockKeepAlive(t *testing.T) {
	schema := newSchema(t)
	a, b := openSchema(t, schema), openSchema(t, schema)
	ctx := t.Context()
	rel, err := a.Lock(ctx, "pop3:7")
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	a.locks.mu.Lock()
	pid := a.locks.conn.PgConn().PID()
	a.locks.mu.Unlock()
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, pid); err != nil {
		t.Fatal(err)
	}
	a.locks.keepAlive(ctx)
	if _, err := b.Lock(ctx, "pop3:7"); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("lock taken by the other node after the keep-alive: %v", err)
	}
}
