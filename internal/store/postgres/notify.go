package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Change notification across nodes: every write transaction that touches
// an account's mailboxes ends with pg_notify(channel, account id), which
// PostgreSQL delivers to every listening session when, and only if, the
// transaction commits. Each Store keeps one connection LISTENing and
// signals its local subscribers for each notification. The writing node
// signals its own subscribers directly after the commit, so a local
// change does not wait for the round trip, and ignores the echo of its
// own notifications: the payload is "<node>:<account id>", node being a
// random id of the Store.

// channelName is the NOTIFY channel of a schema: stores in different
// schemas of one database must not wake each other.
func channelName(schema string) string {
	if schema == "public" {
		return "tern_changes"
	}
	return "tern_changes." + schema
}

// listenPing is how long the listener waits for a notification before
// checking that its connection is still alive: a server that vanished
// without closing the TCP connection would otherwise leave IDLE sessions
// deaf until the kernel gives up.
const listenPing = 30 * time.Second

type subscriber struct{ ch chan struct{} }

// Subscribe implements store.Store.
func (s *Store) Subscribe(accountID int64) (<-chan struct{}, func()) {
	sub := &subscriber{ch: make(chan struct{}, 1)}
	s.subMu.Lock()
	m := s.subs[accountID]
	if m == nil {
		m = make(map[*subscriber]struct{})
		s.subs[accountID] = m
	}
	m[sub] = struct{}{}
	s.subMu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.subMu.Lock()
			delete(s.subs[accountID], sub)
			if len(s.subs[accountID]) == 0 {
				delete(s.subs, accountID)
			}
			s.subMu.Unlock()
		})
	}
}

// notifyLocal signals this node's subscribers of the accounts, never
// blocking: one pending signal is all a waiter needs to look again.
func (s *Store) notifyLocal(accounts map[int64]struct{}) {
	if len(accounts) == 0 {
		return
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for id := range accounts {
		signal(s.subs[id])
	}
}

// notifyAll signals every subscriber: after the listener reconnects, any
// change may have been missed.
func (s *Store) notifyAll() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, m := range s.subs {
		signal(m)
	}
}

func signal(subs map[*subscriber]struct{}) {
	for sub := range subs {
		select {
		case sub.ch <- struct{}{}:
		default:
		}
	}
}

// listen keeps one connection LISTENing on the store's channel until
// Close, reconnecting with backoff. The first connection's outcome is sent
// on ready, so Open fails when the database cannot be listened to at all.
func (s *Store) listen(ready chan<- error) {
	defer close(s.listenEnd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := 100 * time.Millisecond
	for connected := false; ; {
		conn, err := s.connectListener(ctx)
		if ready != nil {
			ready <- err
			ready = nil
			if err != nil {
				return
			}
		}
		if err == nil {
			if connected {
				// Changes made while we were away went unheard.
				s.notifyAll()
			}
			connected = true
			backoff = 100 * time.Millisecond
			err = s.receive(ctx, conn)
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("change listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.connCfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// receive signals subscribers for each notification until the connection
// fails or ctx ends.
func (s *Store) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
			pctx, cancel := context.WithTimeout(ctx, listenPing)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			s.locks.keepAlive(ctx)
			continue
		}
		if err != nil {
			return err
		}
		node, acct, ok := strings.Cut(n.Payload, ":")
		if ok && node == s.node {
			continue // signalled at commit
		}
		id, err := strconv.ParseInt(acct, 10, 64)
		if err != nil {
			s.log.Warn("change notification with a bad payload", "payload", n.Payload)
			continue
		}
		s.notifyLocal(map[int64]struct{}{id: {}})
	}
}
