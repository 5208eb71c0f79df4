package postgres

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// Group commit of deliveries. Every delivery into one mailbox takes the
// mailbox's row lock and holds it until its transaction commits, so one
// transaction per delivery lets one mailbox take one delivery per commit
// (a flush of the WAL) at best. Instead, deliverers goroutines each take
// the deliveries waiting at that moment and run them in one transaction,
// each in its own savepoint: N deliveries share one commit, one refused
// (quota, a missing mailbox) is undone alone. Each delivery is one round
// trip: its statements go in one pipeline, with the release of the
// previous delivery's savepoint in front; undoing a refused one costs
// one more.
//
// Deadlocks: a batch locks the accounts of all its deliveries first, in
// id order, and runs the deliveries in the order of their bodies' hashes,
// so its blob locks too come in the package's lock order. The parts of a
// group (DeliverAll) run in the group's order, which their UIDs must
// follow, so their blob locks may not: two transactions filing the same
// bodies at once can then deadlock, which PostgreSQL breaks and
// commitRetried runs again.

// maxDeliverBatch bounds the deliveries in one transaction.
const maxDeliverBatch = 64

// deliverers is how many batches one node runs at once: while one
// commits, another is filled.
const deliverers = 2

// deliverReq is one Deliver waiting for a deliverer.
type deliverReq struct {
	ctx     context.Context
	d       *store.Delivery
	targets []target // in lock order
	queue   []queueGroup
	sha     []byte
	body    []byte
	info    *string // msginfo.Info as JSON

	// group are deliveries that commit with this one or not at all
	// (DeliverAll), in the same savepoint, after it. Their ctx, err and
	// done are unused: the head's stand for the group.
	group []*deliverReq

	charged []int64 // accounts, as queued
	out     []store.Delivered
	err     error
	done    chan struct{}
}

// parts returns r followed by its group.
func (r *deliverReq) parts() []*deliverReq {
	return append([]*deliverReq{r}, r.group...)
}

// commitDelivery hands r to a deliverer and waits for its outcome. Once
// handed over, r is not abandoned when ctx ends: the caller must learn
// whether it committed.
func (s *Store) commitDelivery(r *deliverReq) error {
	r.done = make(chan struct{})
	select {
	case s.deliverQ <- r:
	case <-s.quit:
		return errClosed
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	<-r.done
	return r.err
}

// deliverer runs batches until Close.
func (s *Store) deliverer() {
	defer s.deliverWG.Done()
	for {
		var first *deliverReq
		select {
		case <-s.quit:
			return
		case first = <-s.deliverQ:
		}
		batch := []*deliverReq{first}
	gather:
		for len(batch) < maxDeliverBatch {
			select {
			case r := <-s.deliverQ:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		s.runBatch(batch)
	}
}

func (s *Store) runBatch(batch []*deliverReq) {
	defer func() {
		// A panic must not kill a deliverer and hang every delivery
		// after it; the batch fails, uncommitted.
		if p := recover(); p != nil {
			s.log.Error("store delivery batch panicked", "panic", p)
			for _, r := range batch {
				r.out, r.err = nil, fmt.Errorf("store delivery panicked: %v", p)
			}
		}
		for _, r := range batch {
			close(r.done)
		}
	}()
	var live []*deliverReq
	for _, r := range batch {
		if r.err = r.ctx.Err(); r.err == nil {
			live = append(live, r)
		}
	}
	slices.SortFunc(live, func(a, b *deliverReq) int { return bytes.Compare(a.sha, b.sha) })
	if len(live) == 0 {
		return
	}
	// The batch does not use any caller's ctx: one caller giving up
	// must not interrupt the transaction the others share.
	if err := s.deliverBatch(context.Background(), live); err != nil {
		for _, r := range live {
			if r.err == nil {
				r.err = err
			}
		}
		return
	}
	touched := map[int64]struct{}{}
	for _, r := range live {
		if r.err == nil {
			for _, p := range r.parts() {
				for _, id := range p.charged {
					touched[id] = struct{}{}
				}
			}
		}
	}
	s.feed.Notify(touched)
}

// deliverBatch runs the deliveries in one transaction. An error it
// returns is the whole batch's; each delivery's own is in its err.
func (s *Store) deliverBatch(ctx context.Context, live []*deliverReq) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	var accounts []int64
	for _, r := range live {
		r.err = nil
		for _, p := range r.parts() {
			p.out = nil
			for _, t := range p.targets {
				accounts = append(accounts, t.account)
			}
		}
	}
	// A delivery alone locks its accounts in order by itself (its
	// targets are sorted), and needs no savepoint: if refused, the whole
	// transaction is rolled back. A group is never alone: its parts'
	// accounts together are not in order.
	alone := len(live) == 1 && len(live[0].group) == 0
	slices.Sort(accounts)
	if accounts = slices.Compact(accounts); len(accounts) > 0 && !alone {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, accounts); err != nil {
			return fmt.Errorf("lock accounts: %w", err)
		}
	}
	now := nanotime.Encode(s.now())
	var pending []string // ends the previous delivery's savepoint
	for _, r := range live {
		if !alone {
			pending = append(pending, "SAVEPOINT d")
		}
		// A group's parts run one pipeline each, in the one savepoint;
		// the first refused ends the group.
		for _, p := range r.parts() {
			var b pgx.Batch
			for _, q := range pending {
				b.Queue(q)
			}
			s.queueDelivery(&b, p, now)
			br := tx.SendBatch(ctx, &b)
			for range pending {
				if _, err := br.Exec(); err != nil {
					br.Close()
					return fmt.Errorf("savepoint: %w", err)
				}
			}
			pending = nil
			r.err = readDelivery(br, p)
			if cerr := br.Close(); r.err == nil && cerr != nil {
				r.err = cerr
			}
			if r.err != nil {
				break
			}
		}
		switch {
		case r.err != nil && !alone:
			// At once, not in the next pipeline: after an SQL error the
			// transaction accepts nothing else, not even the statement
			// preparation a pipeline starts with.
			for _, p := range r.parts() {
				p.out = nil
			}
			if _, err := tx.Exec(ctx, "ROLLBACK TO d; RELEASE d"); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
		case r.err == nil && !alone:
			pending = []string{"RELEASE d"} // COMMIT would release it too
		}
	}
	ok := slices.ContainsFunc(live, func(r *deliverReq) bool { return r.err == nil })
	if !ok {
		return nil // rolled back by the deferred Rollback
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
