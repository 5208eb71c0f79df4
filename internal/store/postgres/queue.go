package postgres

// The outbound queue. Deliver (deliver.go) creates the entries; each
// holds one reference on its body, dropped when the entry goes, so
// garbage collection never takes a queued body. Any node's relay leases
// due entries with FOR UPDATE SKIP LOCKED: two nodes polling at once
// never wait for each other and never lease the same entry, and a dead
// node's leases simply expire.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// queueSelect reads queue entries with their body's hash as BlobID.
const queueSelect = `SELECT q.id, encode(b.sha, 'hex'), q.mail_from, q.domain, q.recipients, q.dsn_ret, q.dsn_envid,
	q.attempts, q.next_attempt, q.last_error, q.created, q.lease_owner, q.lease_until
	FROM queue q JOIN blobs b ON b.id = q.blob_id`

func scanQueueEntry(sc pgx.Row) (store.QueueEntry, error) {
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

func scanQueueEntries(rows pgx.Rows, err error) ([]store.QueueEntry, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.QueueEntry
	for rows.Next() {
		e, err := scanQueueEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ListQueue implements store.Store, soonest attempt first.
func (s *Store) ListQueue(ctx context.Context) ([]store.QueueEntry, error) {
	out, err := scanQueueEntries(s.pool.Query(ctx, queueSelect+` ORDER BY q.next_attempt, q.id`))
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	return out, nil
}

// GetQueueEntry implements store.Store.
func (s *Store) GetQueueEntry(ctx context.Context, id int64) (store.QueueEntry, []store.Event, error) {
	e, err := scanQueueEntry(s.pool.QueryRow(ctx, queueSelect+` WHERE q.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return e, nil, fmt.Errorf("queue entry %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return e, nil, fmt.Errorf("get queue entry: %w", err)
	}
	evs, err := s.QueueEvents(ctx, id)
	return e, evs, err
}

// QueueEvents implements store.Store.
func (s *Store) QueueEvents(ctx context.Context, id int64) ([]store.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, queue_id, time, kind, detail FROM events WHERE queue_id = $1 ORDER BY id`, id)
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

// AddEvent implements store.Store. Events outlive their queue entry (the
// history of a delivered message stays readable), so QueueID is not
// checked.
func (s *Store) AddEvent(ctx context.Context, e store.Event) error {
	if e.Kind == "" {
		return fmt.Errorf("add event: %w: no kind", store.ErrInvalid)
	}
	err := s.write(ctx, func(w *wtx) error { return w.addEvents(e.QueueID, s.now(), []store.Event{e}) })
	if err != nil {
		return fmt.Errorf("add event: %w", err)
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
		if _, err := w.exec(`INSERT INTO events (queue_id, time, kind, detail) VALUES ($1, $2, $3, $4)`,
			queueID, nanotime.Encode(t), cleanText(e.Kind), cleanText(e.Detail)); err != nil {
			return fmt.Errorf("add event: %w", err)
		}
	}
	return nil
}

// LeaseQueue implements store.Store. The first part picks, from one
// snapshot, the due entries soonest first within the per-domain limit;
// the UPDATE then claims those of them no other node is claiming at this
// moment (SKIP LOCKED) and that are still unleased once their lock is
// held (PostgreSQL re-checks the condition on the row's latest version).
func (s *Store) LeaseQueue(ctx context.Context, req store.LeaseRequest) ([]store.QueueEntry, error) {
	if req.Owner == "" || req.Max <= 0 || req.For <= 0 {
		return nil, fmt.Errorf("lease queue: %w: need an owner, Max > 0 and For > 0", store.ErrInvalid)
	}
	perDomain := req.PerDomain
	if perDomain <= 0 {
		perDomain = req.Max
	}
	var busyDomains []string
	var busyN []int64
	for d, n := range req.Busy {
		busyDomains = append(busyDomains, d)
		busyN = append(busyN, int64(n))
	}
	now, until := nanotime.Encode(req.Now), nanotime.Encode(req.Now.Add(req.For))
	var out []store.QueueEntry
	err := s.write(ctx, func(w *wtx) error {
		ids, err := collect[int64](w.query(`WITH busy AS (
				SELECT * FROM unnest($1::text[], $2::bigint[]) AS b(domain, n)),
			pick AS (
				SELECT id FROM (
					SELECT q.id, q.next_attempt,
						coalesce(b.n, 0) + row_number() OVER (PARTITION BY q.domain ORDER BY q.next_attempt, q.id) AS n
					FROM queue q LEFT JOIN busy b ON b.domain = q.domain
					WHERE q.next_attempt <= $3 AND q.lease_until <= $3) x
				WHERE n <= $4 ORDER BY next_attempt, id LIMIT $5)
			UPDATE queue SET lease_owner = $6, lease_until = $7
			WHERE id IN (SELECT id FROM queue
				WHERE id IN (SELECT id FROM pick) AND next_attempt <= $3 AND lease_until <= $3
				FOR UPDATE SKIP LOCKED)
			RETURNING id`,
			busyDomains, busyN, now, perDomain, req.Max, req.Owner, until))
		if err != nil || len(ids) == 0 {
			out = nil
			return err
		}
		out, err = scanQueueEntries(w.query(queueSelect+` WHERE q.id = ANY($1) ORDER BY q.next_attempt, q.id`, ids))
		return err
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
		err := w.queryRow(`SELECT lease_owner FROM queue WHERE id = $1 FOR UPDATE`, u.ID).Scan(&owner)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
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
		_, err = w.exec(`UPDATE queue SET recipients = $1, attempts = attempts + 1, next_attempt = $2,
			last_error = $3, lease_owner = '', lease_until = 0 WHERE id = $4`,
			string(rcpts), nanotime.Encode(u.NextAttempt), cleanText(u.LastError), u.ID)
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

// removeQueueEntry deletes the entry and drops its body reference.
func (w *wtx) removeQueueEntry(id int64) error {
	var blob int64
	err := w.queryRow(`DELETE FROM queue WHERE id = $1 RETURNING blob_id`, id).Scan(&blob)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if _, err := w.exec(`UPDATE blobs SET refcount = refcount - 1 WHERE id = $1`, blob); err != nil {
		return fmt.Errorf("release blob: %w", err)
	}
	return nil
}

// RetryQueueEntry implements store.Store. A live lease is left alone: the
// worker holding it is already trying.
func (s *Store) RetryQueueEntry(ctx context.Context, id int64, now time.Time) error {
	err := s.write(ctx, func(w *wtx) error {
		tag, err := w.exec(`UPDATE queue SET next_attempt = $1 WHERE id = $2`, nanotime.Encode(now), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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
		tag, err := w.exec(`UPDATE queue SET lease_owner = '', lease_until = 0 WHERE lease_owner = $1`, owner)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	return int(n), nil
}
