package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
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

// Subscribe implements store.Store.
func (s *Store) Subscribe(accountID int64) (<-chan struct{}, func()) {
	return s.feed.Subscribe(accountID)
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
				s.feed.NotifyAll()
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
		s.feed.Notify(map[int64]struct{}{id: {}})
	}
}
