package sqlite

// The relay's side of the queue: leasing due entries, recording attempts,
// removing and retrying entries. Deliver (deliver.go) creates the entries;
// each holds one reference on its body (blobs.refcount), dropped here
// when the entry goes, so garbage collection never takes a queued body.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// LeaseQueue implements store.Store. The store has one writer, so the
// UPDATE below claims its rows atomically; the PostgreSQL store selects
// them with FOR UPDATE SKIP LOCKED instead.
func (s *Store) LeaseQueue(ctx context.Context, req store.LeaseRequest) ([]store.QueueEntry, error) {
	if req.Owner == "" || req.Max <= 0 || req.For <= 0 {
		return nil, fmt.Errorf("lease queue: %w: need an owner, Max > 0 and For > 0", store.ErrInvalid)
	}
	perDomain := req.PerDomain
	if perDomain <= 0 {
		perDomain = req.Max
	}
	// busy(domain, n) always has a row, so the statement is the same
	// shape whether or not anything is busy.
	busy := "(NULL, 0)" + strings.Repeat(", (?, ?)", len(req.Busy))
	var args []any
	for d, n := range req.Busy {
		args = append(args, d, n)
	}
	args = append(args, req.Owner, nanotime.Encode(req.Now.Add(req.For)), nanotime.Encode(req.Now), nanotime.Encode(req.Now), perDomain, req.Max)
	var out []store.QueueEntry
	err := s.write(ctx, func(w *wtx) error {
		out = nil
		rows, err := w.query(`WITH busy(domain, n) AS (VALUES `+busy+`)
			UPDATE queue SET lease_owner = ?, lease_until = ?
			WHERE id IN (SELECT id FROM (
				SELECT q.id, q.next_attempt, coalesce(b.n, 0) + row_number() OVER (PARTITION BY q.domain ORDER BY q.next_attempt, q.id) AS n
				FROM queue q LEFT JOIN busy b ON b.domain = q.domain
				WHERE q.next_attempt <= ? AND q.lease_until <= ?)
				WHERE n <= ? ORDER BY next_attempt, id LIMIT ?)
			RETURNING id`, args...)
		if err != nil {
			return err
		}
		var ids []any
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		marks := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
		rows, err = w.query(queueSelect+` WHERE q.id IN (`+marks+`) ORDER BY q.next_attempt, q.id`, ids...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanQueueEntry(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("lease queue: %w", err)
	}
	return out, nil
}

// UpdateQueueEntry implements store.Store.
func (s *Store) UpdateQueueEntry(ctx context.Context, u store.QueueUpdate) error {
	rcpts, err := json.Marshal(u.Remaining)
	if err != nil {
		return fmt.Errorf("update queue entry %d: %w", u.ID, err)
	}
	now := s.now()
	err = s.write(ctx, func(w *wtx) error {
		var owner string
		err := w.queryRow(`SELECT lease_owner FROM queue WHERE id = ?`, u.ID).Scan(&owner)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err != nil || owner != u.Owner {
			return fmt.Errorf("%w: not leased by %q", store.ErrNotFound, u.Owner)
		}
		if err := w.addEvents(u.ID, now, u.Events); err != nil {
			return err
		}
		if len(u.Remaining) == 0 {
			return w.removeQueueEntry(u.ID)
		}
		_, err = w.exec(`UPDATE queue SET recipients = ?, attempts = attempts + 1, next_attempt = ?,
			last_error = ?, lease_owner = '', lease_until = 0 WHERE id = ?`,
			string(rcpts), nanotime.Encode(u.NextAttempt), u.LastError, u.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("update queue entry %d: %w", u.ID, err)
	}
	return nil
}

// RemoveQueueEntry implements store.Store.
func (s *Store) RemoveQueueEntry(ctx context.Context, id int64) error {
	err := s.write(ctx, func(w *wtx) error { return w.removeQueueEntry(id) })
	if err != nil {
		return fmt.Errorf("remove queue entry %d: %w", id, err)
	}
	return nil
}

// RetryQueueEntry implements store.Store. A live lease is left alone: the
// worker holding it is already trying.
func (s *Store) RetryQueueEntry(ctx context.Context, id int64, now time.Time) error {
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE queue SET next_attempt = ? WHERE id = ?`, nanotime.Encode(now), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("retry queue entry %d: %w", id, err)
	}
	return nil
}

// ReleaseLeases implements store.Store.
func (s *Store) ReleaseLeases(ctx context.Context, owner string) (int, error) {
	var n int64
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE queue SET lease_owner = '', lease_until = 0 WHERE lease_owner = ?`, owner)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	return int(n), nil
}

// QueueEvents implements store.Store.
func (s *Store) QueueEvents(ctx context.Context, id int64) ([]store.Event, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, queue_id, time, kind, detail FROM events WHERE queue_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("queue events: %w", err)
	}
	defer rows.Close()
	var evs []store.Event
	for rows.Next() {
		var ev store.Event
		var t int64
		if err := rows.Scan(&ev.ID, &ev.QueueID, &t, &ev.Kind, &ev.Detail); err != nil {
			return nil, fmt.Errorf("queue events: %w", err)
		}
		ev.Time = nanotime.Decode(t)
		evs = append(evs, ev)
	}
	return evs, rows.Err()
}

// removeQueueEntry deletes the entry and drops its body reference.
func (w *wtx) removeQueueEntry(id int64) error {
	var blob int64
	err := w.queryRow(`DELETE FROM queue WHERE id = ? RETURNING blob_id`, id).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if _, err := w.exec(`UPDATE blobs SET refcount = refcount - 1 WHERE id = ?`, blob); err != nil {
		return fmt.Errorf("release blob: %w", err)
	}
	return nil
}

func (w *wtx) addEvents(queueID int64, now time.Time, evs []store.Event) error {
	for _, e := range evs {
		if e.Kind == "" {
			return fmt.Errorf("%w: event without kind", store.ErrInvalid)
		}
		t := e.Time
		if t.IsZero() {
			t = now
		}
		if _, err := w.exec(`INSERT INTO events (queue_id, time, kind, detail) VALUES (?, ?, ?, ?)`,
			queueID, nanotime.Encode(t), e.Kind, e.Detail); err != nil {
			return fmt.Errorf("add event: %w", err)
		}
	}
	return nil
}
