package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
)

// Named locks (a POP3 maildrop) are PostgreSQL session advisory locks
// held on one dedicated connection per Store: when a node dies its
// session ends and the server frees its locks, so a crashed holder never
// blocks the others. A session may take the same advisory lock twice, so
// the locks this node holds are also kept in a map, which refuses a
// second holder on the same node.

// lockTimeout bounds the lock statements, which should take a round trip.
const lockTimeout = 10 * time.Second

type lockConn struct {
	s    *Store
	mu   sync.Mutex
	conn *pgx.Conn
	held map[string]struct{}
}

// lockKey names a lock in the database-wide advisory lock space; stores
// in different schemas have separate locks.
func (l *lockConn) lockKey(name string) string {
	return "tern lock " + l.s.schema + " " + name
}

// Lock implements store.Store.
func (s *Store) Lock(ctx context.Context, name string) (func(), error) {
	if err := s.locks.acquire(ctx, name); err != nil {
		return nil, fmt.Errorf("lock %q: %w", name, err)
	}
	var once sync.Once
	return func() { once.Do(func() { s.locks.release(name) }) }, nil
}

func (l *lockConn) acquire(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.held[name]; ok {
		return store.ErrInUse
	}
	var ok bool
	for try := 0; ; try++ {
		if err := l.connect(ctx); err != nil {
			return err
		}
		err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, l.lockKey(name)).Scan(&ok)
		if err == nil {
			break
		}
		// A connection found dead on use (the server restarted, a
		// proxy dropped it) is replaced once.
		if try > 0 || !l.conn.IsClosed() {
			return err
		}
	}
	if !ok {
		return store.ErrInUse
	}
	if l.held == nil {
		l.held = make(map[string]struct{})
	}
	l.held[name] = struct{}{}
	return nil
}

// connect (re)opens the lock connection. If an earlier one broke, the
// server freed its locks: take them again, and say so when another node
// got one meanwhile.
func (l *lockConn) connect(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	select {
	case <-l.s.quit:
		return errClosed
	default:
	}
	conn, err := pgx.ConnectConfig(ctx, l.s.connCfg)
	if err != nil {
		return err
	}
	l.conn = conn
	for name := range l.held {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, l.lockKey(name)).Scan(&ok)
		if err != nil || !ok {
			l.s.log.Error("lock lost with its connection and taken by another node", "lock", name, "err", err)
		}
	}
	return nil
}

// keepAlive checks, while locks are held, that their session is alive,
// so that a connection a server restart or a proxy dropped is replaced
// (and its locks taken again) within a ping interval, not at the next
// Lock.
func (l *lockConn) keepAlive(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held) == 0 || l.conn == nil {
		return
	}
	if err := l.conn.Ping(ctx); err == nil {
		return
	}
	l.conn.Close(ctx)
	if err := l.connect(ctx); err != nil {
		l.s.log.Error("lock connection lost; locks held are not protected until it is back", "err", err)
	}
}

func (l *lockConn) release(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.held[name]; !ok {
		return
	}
	delete(l.held, name)
	if l.conn == nil || l.conn.IsClosed() {
		return // the server freed it with the session
	}
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, l.lockKey(name)); err != nil {
		// Closing the session frees every lock it holds; the others are
		// taken again on the next connect.
		l.s.log.Warn("unlock failed; dropping the lock connection", "lock", name, "err", err)
		l.conn.Close(ctx)
	}
}

func (l *lockConn) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close(context.Background())
		l.conn = nil
	}
	l.held = nil
}
