// Package postgres is Tern's shared store: every table and every message
// body in one PostgreSQL database (or schema), so that several Tern nodes
// can serve the same domains.
//
// Each write is one PostgreSQL transaction on a pooled connection, except
// deliveries: those arriving together share one transaction, each in its
// own savepoint (group commit, groupcommit.go), because the writers of
// one mailbox must take turns on its row until they commit. Concurrency
// is made safe by row locks taken in an order that keeps the write paths
// free of deadlocks:
//
//   - accounts first, by id. Every write that locks mailboxes (other than
//     a lone flag change, which then waits for nothing) holds the
//     account's lock already, so mailbox locks never close a cycle.
//   - blobs last among shared rows, by SHA-256: a delivery adds to one
//     body, an expunge or a copy to several, in hash order. A new body's
//     insert waits only on another insert of the same hash.
//   - a queue entry's row before its body's.
//
// UID and MODSEQ come from "UPDATE mailboxes SET uidnext = uidnext + 1 …
// RETURNING" (deliver.go). Changes reach the other nodes with NOTIFY
// (notify.go), named locks are session advisory locks (lock.go) and the
// relay leases queue entries with FOR UPDATE SKIP LOCKED (queue.go).
// import.go copies a store/sqlite data directory in ("tern migrate").
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/feed"
)

var _ store.Store = (*Store)(nil)

// inlineMax is the largest body Spool keeps in memory; larger ones wait
// in a temporary file until Deliver writes them into the database.
const inlineMax = 1 << 20

// defaultMaxConns is the pool size unless the DSN sets pool_max_conns.
const defaultMaxConns = 32

// maxTries bounds how often a write is run again after PostgreSQL
// aborted it for a deadlock or a serialization failure. The lock order
// above makes deadlocks unexpected; the retry is the safety net.
const maxTries = 5

// Store is the PostgreSQL implementation of store.Store. Use Open.
type Store struct {
	pool     *pgxpool.Pool
	connCfg  *pgx.ConnConfig // for the dedicated listener and lock connections
	log      *slog.Logger
	now      func() time.Time
	schema   string // current_schema() of the pool's connections
	channel  string // NOTIFY channel of this schema
	node     string // random id of this Store in NOTIFY payloads
	inlineAt int64
	spoolDir string // this Store's temporary files for large bodies

	quit      chan struct{}
	listenEnd chan struct{}
	closeOnce sync.Once

	deliverQ  chan *deliverReq // to the deliverers (groupcommit.go)
	deliverWG sync.WaitGroup

	feed feed.Hub // Subscribe; notify.go

	locks lockConn
}

// Open connects to the database named by dsn (a PostgreSQL URL or
// keyword/value string, as libpq takes them), brings its schema up to
// date and starts listening for changes made by other nodes.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn masks the password in the text of its parse errors.
		return nil, fmt.Errorf("open store: bad PostgreSQL DSN: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgxpool's default, the number of CPUs, would let a handful of
		// deliveries waiting on their commits hold up every session.
		cfg.MaxConns = defaultMaxConns
	}
	return openConfig(ctx, cfg, log)
}

func openConfig(ctx context.Context, cfg *pgxpool.Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "tern"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{
		pool:      pool,
		connCfg:   cfg.ConnConfig.Copy(),
		log:       log,
		now:       time.Now,
		inlineAt:  inlineMax,
		node:      strconv.FormatUint(rand.Uint64(), 36),
		quit:      make(chan struct{}),
		listenEnd: make(chan struct{}),
		deliverQ:  make(chan *deliverReq),
	}
	if err := s.init(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.locks.s = s
	ready := make(chan error, 1)
	go s.listen(ready)
	if err := <-ready; err != nil {
		close(s.quit)
		<-s.listenEnd
		pool.Close()
		os.RemoveAll(s.spoolDir)
		return nil, fmt.Errorf("open store: listen: %w", err)
	}
	for range deliverers {
		s.deliverWG.Add(1)
		go s.deliverer()
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	var enc string
	if err := s.pool.QueryRow(ctx, `SHOW server_encoding`).Scan(&enc); err != nil {
		return err
	}
	if enc != "UTF8" {
		return fmt.Errorf("database encoding is %s; Tern needs UTF8 (createdb -E UTF8)", enc)
	}
	if err := migrate(ctx, s.pool); err != nil {
		return err
	}
	var schema *string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return err
	}
	if schema == nil {
		return errors.New("no schema: search_path names no existing schema")
	}
	s.schema = *schema
	s.channel = channelName(s.schema)
	dir, err := os.MkdirTemp("", "tern-spool-")
	if err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	s.spoolDir = dir
	return nil
}

// Close stops listening, frees the locks held and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.deliverWG.Wait()
		<-s.listenEnd
		s.locks.close()
		s.pool.Close()
		os.RemoveAll(s.spoolDir)
	})
	return nil
}

// wtx is what a write function sees: its transaction, and the accounts
// to signal once it has committed.
type wtx struct {
	s       *Store
	ctx     context.Context
	tx      pgx.Tx
	touched map[int64]struct{} // accounts whose subscribers to signal
}

// write runs fn in a transaction and commits it. fn may run more than
// once (after a deadlock or serialization failure), so it must set its
// results afresh each time. Subscribers of the accounts fn touched are
// signalled after the commit, on this node directly and on the others by
// NOTIFY, which PostgreSQL delivers only if the transaction commits.
func (s *Store) write(ctx context.Context, fn func(w *wtx) error) error {
	select {
	case <-s.quit:
		return errClosed
	default:
	}
	for try := 1; ; try++ {
		err := s.writeOnce(ctx, fn)
		if err == nil || try == maxTries || !retryable(err) || ctx.Err() != nil {
			return classify(err)
		}
		s.log.Debug("store write retried", "err", err, "try", try)
		backoff(try)
	}
}

// backoff waits a little, more after each try, before a transaction
// runs again after a conflict; the jitter keeps the conflicting ones
// from meeting again.
func backoff(try int) {
	time.Sleep(time.Duration(rand.IntN(10*try)+1) * time.Millisecond)
}

var errClosed = errors.New("store closed")

func (s *Store) writeOnce(ctx context.Context, fn func(w *wtx) error) (err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// Rollback after Commit is a no-op; it must run even if ctx is done.
	defer tx.Rollback(context.WithoutCancel(ctx))
	w := &wtx{s: s, ctx: ctx, tx: tx}
	if err := fn(w); err != nil {
		return err
	}
	if len(w.touched) > 0 {
		ids := make([]string, 0, len(w.touched))
		for id := range w.touched {
			ids = append(ids, fmt.Sprintf("%s:%d", s.node, id))
		}
		if _, err := tx.Exec(ctx, sqlNotify, s.channel, ids); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	// Once the COMMIT is sent, the caller must learn whether it took:
	// a cancelled ctx must not cut it short.
	if err := tx.Commit(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.feed.Notify(w.touched)
	return nil
}

// sqlNotify signals the nodes listening on channel $1, one payload
// "<node>:<account id>" per element of $2, when the transaction commits.
const sqlNotify = `SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id`

// retryable reports whether PostgreSQL aborted the transaction for a
// conflict that running it again resolves.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01" // serialization_failure, deadlock_detected
	}
	return false
}

// classify marks a failure caused by a full disk (the server's, or the
// spool directory's) with store.ErrFull, so doors answer with a temporary
// error that says so instead of an internal one.
func classify(err error) error {
	switch {
	case err == nil, errors.Is(err, store.ErrFull):
		return err
	case pgCode(err) == codeDiskFull, errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	}
	return err
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeDiskFull            = "53100"
)

func (w *wtx) exec(q string, args ...any) (pgconn.CommandTag, error) {
	return w.tx.Exec(w.ctx, q, args...)
}

func (w *wtx) query(q string, args ...any) (pgx.Rows, error) {
	return w.tx.Query(w.ctx, q, args...)
}

func (w *wtx) queryRow(q string, args ...any) pgx.Row {
	return w.tx.QueryRow(w.ctx, q, args...)
}

func (w *wtx) touch(accountID int64) {
	if w.touched == nil {
		w.touched = make(map[int64]struct{})
	}
	w.touched[accountID] = struct{}{}
}

// exists reports whether the query finds a row.
func (w *wtx) exists(q string, args ...any) (bool, error) {
	var one int
	err := w.queryRow(q, args...).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// check fails with sentinel when whether q finds a row is not want.
func (w *wtx) check(want bool, sentinel error, what string, q string, args ...any) error {
	ok, err := w.exists(q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if ok != want {
		return fmt.Errorf("%s: %w", what, sentinel)
	}
	return nil
}

// affectedOne turns "no row changed" into ErrNotFound.
func affectedOne(tag pgconn.CommandTag, err error, op, what string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s %s: %w", op, what, store.ErrNotFound)
	}
	return nil
}

// collect reads single-column rows.
func collect[T any](rows pgx.Rows, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[T])
}
