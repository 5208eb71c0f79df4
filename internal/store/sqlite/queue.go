package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// queueSelect reads queue entries with their body's hash as BlobID.
const queueSelect = `SELECT q.id, lower(hex(b.sha)), q.mail_from, q.domain, q.recipients, q.dsn_ret, q.dsn_envid,
	q.attempts, q.next_attempt, q.last_error, q.created, q.lease_owner, q.lease_until
	FROM queue q JOIN blobs b ON b.id = q.blob_id`

func scanQueueEntry(sc interface{ Scan(...any) error }) (store.QueueEntry, error) {
	var e store.QueueEntry
	var rcpts string
	var next, created, lease int64
	err := sc.Scan(&e.ID, &e.BlobID, &e.From, &e.Domain, &rcpts, &e.DSN.Ret, &e.DSN.EnvID, &e.Attempts,
		&next, &e.LastError, &created, &e.LeaseOwner, &lease)
	if err != nil {
		return e, err
	}
	e.NextAttempt, e.Created, e.LeaseUntil = nanotime.Decode(next), nanotime.Decode(created), nanotime.Decode(lease)
	if err := json.Unmarshal([]byte(rcpts), &e.Recipients); err != nil {
		return e, fmt.Errorf("queue entry %d: bad recipients: %w", e.ID, err)
	}
	return e, nil
}

// ListQueue implements store.Store, soonest attempt first.
func (s *Store) ListQueue(ctx context.Context) ([]store.QueueEntry, error) {
	rows, err := s.rdb.QueryContext(ctx, queueSelect+` ORDER BY q.next_attempt, q.id`)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	defer rows.Close()
	var out []store.QueueEntry
	for rows.Next() {
		e, err := scanQueueEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("list queue: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// GetQueueEntry implements store.Store.
func (s *Store) GetQueueEntry(ctx context.Context, id int64) (store.QueueEntry, []store.Event, error) {
	e, err := scanQueueEntry(s.rdb.QueryRowContext(ctx, queueSelect+` WHERE q.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return e, nil, fmt.Errorf("queue entry %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return e, nil, fmt.Errorf("get queue entry: %w", err)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, queue_id, time, kind, detail FROM events WHERE queue_id = ? ORDER BY id`, id)
	if err != nil {
		return e, nil, fmt.Errorf("get queue events: %w", err)
	}
	defer rows.Close()
	var evs []store.Event
	for rows.Next() {
		var ev store.Event
		var t int64
		if err := rows.Scan(&ev.ID, &ev.QueueID, &t, &ev.Kind, &ev.Detail); err != nil {
			return e, nil, fmt.Errorf("get queue events: %w", err)
		}
		ev.Time = nanotime.Decode(t)
		evs = append(evs, ev)
	}
	return e, evs, rows.Err()
}

// AddEvent implements store.Store. Events outlive their queue entry (the
// history of a delivered message stays readable), so QueueID is not
// checked.
func (s *Store) AddEvent(ctx context.Context, e store.Event) error {
	if e.Kind == "" {
		return fmt.Errorf("add event: %w: no kind", store.ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	return s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`INSERT INTO events (queue_id, time, kind, detail) VALUES (?, ?, ?, ?)`,
			e.QueueID, nanotime.Encode(e.Time), e.Kind, e.Detail)
		if err != nil {
			return fmt.Errorf("add event: %w", err)
		}
		return nil
	})
}
