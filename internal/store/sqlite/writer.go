package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"syscall"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ternmail/tern/internal/store"
)

var errClosed = errors.New("store closed")

// writeReq is one write waiting for the writer goroutine.
type writeReq struct {
	ctx  context.Context
	fn   func(w *wtx) error
	err  error
	w    *wtx
	done chan struct{}
}

// wtx is what a write function sees: the batch's transaction, already
// inside the request's own SAVEPOINT, and what to do after the commit.
type wtx struct {
	s       *Store
	tx      *sql.Tx
	touched map[int64]struct{} // accounts whose subscribers to signal
	after   []func()           // run on the writer goroutine after commit
}

// write runs fn in the writer goroutine, batched with whatever other writes
// are waiting, and returns once the batch is committed (or fn failed and
// its savepoint was rolled back). Once handed over, the request is not
// abandoned on ctx cancellation: the caller must learn whether it
// committed.
func (s *Store) write(ctx context.Context, fn func(w *wtx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan struct{})}
	select {
	case s.reqs <- req:
	case <-s.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	<-req.done
	return classify(req.err)
}

// classify marks a failure caused by a full disk with store.ErrFull, so
// doors answer with a temporary error that says so instead of an
// internal one.
func classify(err error) error {
	var coded interface{ Code() int }
	switch {
	case err == nil, errors.Is(err, store.ErrFull):
		return err
	case errors.As(err, &coded) && coded.Code()&0xff == sqlite3.SQLITE_FULL,
		errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	}
	return err
}

// writer owns the writing connection. The channel is unbuffered, so after
// taking one request the non-blocking loop collects exactly the writers
// blocked at that moment: while one batch commits the next one gathers.
func (s *Store) writer() {
	defer close(s.writerEnd)
	for {
		var first *writeReq
		select {
		case <-s.quit:
			return
		case first = <-s.reqs:
		}
		batch := []*writeReq{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		s.runBatch(batch)
	}
}

func (s *Store) runBatch(batch []*writeReq) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	// The batch's statements do not use any caller's ctx: one caller
	// giving up must not interrupt the connection the others share.
	ctx := context.Background()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range batch {
			r.err = fmt.Errorf("begin write: %w", err)
		}
		return
	}
	ok := 0
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		var fatal error
		r.err, fatal = s.runOne(tx, r)
		if fatal != nil {
			// The transaction is in an unknown state: give it all up.
			tx.Rollback()
			for _, r := range batch {
				r.err = fatal
			}
			return
		}
		if r.err == nil {
			ok++
		}
	}
	if ok == 0 {
		tx.Rollback()
		return
	}
	if err := tx.Commit(); err != nil {
		s.log.Error("store commit failed", "err", err, "batch", len(batch))
		for _, r := range batch {
			if r.err == nil {
				r.err = fmt.Errorf("commit: %w", err)
			}
		}
		return
	}
	s.commits.Add(1)
	s.writes.Add(int64(ok))
	touched := make(map[int64]struct{})
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		for id := range r.w.touched {
			touched[id] = struct{}{}
		}
		for _, f := range r.w.after {
			f()
		}
	}
	s.feed.Notify(touched)
}

// runOne runs one request in its own savepoint. err is the request's own
// failure; fatal means the savepoint could not be undone.
func (s *Store) runOne(tx *sql.Tx, r *writeReq) (err, fatal error) {
	w := &wtx{s: s, tx: tx}
	r.w = w
	if _, err := w.exec(sqlSavepoint); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	err = func() (err error) {
		// A panic in a write function must not kill the only writer and
		// hang every later write; it fails that one request.
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("store write panicked", "panic", p)
				err = fmt.Errorf("store write panicked: %v", p)
			}
		}()
		return r.fn(w)
	}()
	if err != nil {
		if _, rerr := w.exec(sqlRollbackTo); rerr != nil {
			return err, fmt.Errorf("rollback to savepoint: %w", rerr)
		}
	}
	if _, rerr := w.exec(sqlRelease); rerr != nil {
		return err, fmt.Errorf("release savepoint: %w", rerr)
	}
	return err, nil
}

const (
	sqlSavepoint  = "SAVEPOINT w"
	sqlRelease    = "RELEASE w"
	sqlRollbackTo = "ROLLBACK TO w"
)

// hotStatements run for every delivery. Parsing SQL was a visible part of
// a delivery's CPU time (the driver prepares each Exec anew), so they are
// prepared once at Open and bound to the writer's transactions with
// Tx.Stmt, which reuses the statement already prepared on the writer's
// only connection.
var hotStatements = []string{sqlSavepoint, sqlRelease, sqlRollbackTo,
	sqlAddBlobRef, sqlChargeAccount, sqlNextUID, sqlInsertMessage}

// prepareHot prepares hotStatements on the writer connection; it must
// run before the writer goroutine holds that connection.
func (s *Store) prepareHot() error {
	s.hot = make(map[string]*sql.Stmt, len(hotStatements))
	for _, q := range hotStatements {
		st, err := s.wdb.Prepare(q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.hot[q] = st
	}
	return nil
}

func (w *wtx) exec(q string, args ...any) (sql.Result, error) {
	if st := w.s.hot[q]; st != nil {
		return w.tx.Stmt(st).Exec(args...)
	}
	return w.tx.Exec(q, args...)
}

func (w *wtx) query(q string, args ...any) (*sql.Rows, error) {
	return w.tx.Query(q, args...)
}

func (w *wtx) queryRow(q string, args ...any) *sql.Row {
	if st := w.s.hot[q]; st != nil {
		return w.tx.Stmt(st).QueryRow(args...)
	}
	return w.tx.QueryRow(q, args...)
}

func (w *wtx) touch(accountID int64) {
	if w.touched == nil {
		w.touched = make(map[int64]struct{})
	}
	w.touched[accountID] = struct{}{}
}

func (w *wtx) afterCommit(f func()) { w.after = append(w.after, f) }
