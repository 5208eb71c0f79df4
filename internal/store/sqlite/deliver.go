package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/flagset"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// Deliver implements store.Store. The delivery runs in its own savepoint
// of the writer's current batch: if it fails (ErrQuota, ErrNoSuchMailbox)
// nothing of it remains and the rest of the batch commits.
func (s *Store) Deliver(ctx context.Context, d *store.Delivery) ([]store.Delivered, error) {
	p, err := s.prepareDelivery(d)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	var out []store.Delivered
	err = s.write(ctx, func(w *wtx) error {
		var err error
		out, err = w.deliver(d, p.targets, p.queue)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	return out, nil
}

// DeliverAll implements store.Store: the deliveries run one after the
// other in a single savepoint of the writer's batch, so the first
// failure undoes them all and leaves the rest of the batch alone.
func (s *Store) DeliverAll(ctx context.Context, ds []*store.Delivery) ([][]store.Delivered, error) {
	if len(ds) == 0 {
		return nil, fmt.Errorf("deliver all: %w: no deliveries", store.ErrInvalid)
	}
	ps := make([]prepared, len(ds))
	for i, d := range ds {
		p, err := s.prepareDelivery(d)
		if err != nil {
			return nil, fmt.Errorf("deliver all: message %d: %w", i+1, err)
		}
		ps[i] = p
	}
	var out [][]store.Delivered
	err := s.write(ctx, func(w *wtx) error {
		out = make([][]store.Delivered, len(ds))
		for i, d := range ds {
			var err error
			if out[i], err = w.deliver(d, ps[i].targets, ps[i].queue); err != nil {
				return fmt.Errorf("message %d: %w", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("deliver all: %w", err)
	}
	return out, nil
}

// prepared is a delivery checked and parsed before it is queued, keeping
// the writer's critical section to SQL.
type prepared struct {
	targets []target
	queue   []queueGroup
}

func (s *Store) prepareDelivery(d *store.Delivery) (prepared, error) {
	if d == nil || d.Blob == nil {
		return prepared{}, fmt.Errorf("%w: no body", store.ErrInvalid)
	}
	if len(d.Local) == 0 && len(d.Remote) == 0 {
		return prepared{}, fmt.Errorf("%w: no recipients", store.ErrInvalid)
	}
	targets := make([]target, len(d.Local))
	for i, t := range d.Local {
		name, err := mailboxName(t.Mailbox)
		if err != nil {
			return prepared{}, err
		}
		fs, err := flagset.Parse(t.Flags)
		if err != nil {
			return prepared{}, err
		}
		date := t.InternalDate
		if date.IsZero() {
			date = s.now()
		}
		targets[i] = target{account: t.AccountID, mailbox: name, bits: fs.Bits, keywords: fs.Stored(), date: nanotime.Encode(date)}
	}
	queue, err := groupByDomain(d.Remote)
	if err != nil {
		return prepared{}, err
	}
	return prepared{targets: targets, queue: queue}, nil
}

type target struct {
	account  int64
	mailbox  string
	bits     int64
	keywords string
	date     int64
}

type queueGroup struct {
	domain     string
	recipients string // JSON
}

// groupByDomain makes one queue entry per destination domain
// (store.GroupByDomain), its recipients stored as JSON.
func groupByDomain(rcpts []store.QueueRecipient) ([]queueGroup, error) {
	groups, err := store.GroupByDomain(rcpts)
	if err != nil {
		return nil, err
	}
	out := make([]queueGroup, len(groups))
	for i, g := range groups {
		j, err := json.Marshal(g.Recipients)
		if err != nil {
			return nil, err
		}
		out[i] = queueGroup{domain: g.Domain, recipients: string(j)}
	}
	return out, nil
}

// The statements every delivery runs, prepared once (hotStatements).
const (
	sqlChargeAccount = `UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ? RETURNING used_bytes, quota_bytes`
	sqlNextUID       = `UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
		WHERE account_id = ? AND name = ? RETURNING id, uidvalidity, uidnext - 1, highestmodseq`
	sqlInsertMessage = `INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, blob_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
)

func (w *wtx) deliver(d *store.Delivery, targets []target, queue []queueGroup) ([]store.Delivered, error) {
	blobRow, err := w.addBlobRefs(d.Blob, d.Info, len(targets)+len(queue))
	if err != nil {
		return nil, err
	}
	// Charge each account once with everything this delivery adds to it.
	charge := make(map[int64]int64)
	var accounts []int64
	for _, t := range targets {
		if _, ok := charge[t.account]; !ok {
			accounts = append(accounts, t.account)
		}
		charge[t.account] += d.Blob.Size
	}
	for _, id := range accounts {
		var used, quota int64
		err := w.queryRow(sqlChargeAccount, charge[id], id).Scan(&used, &quota)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("account %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if d.EnforceQuota && quota > 0 && used > quota {
			return nil, fmt.Errorf("account %d: %w", id, store.ErrQuota)
		}
		w.touch(id)
	}
	out := make([]store.Delivered, len(targets))
	for i, t := range targets {
		dl := store.Delivered{AccountID: t.account}
		var modseq uint64
		err := w.queryRow(sqlNextUID,
			t.account, t.mailbox).Scan(&dl.MailboxID, &dl.UIDValidity, &dl.UID, &modseq)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("account %d mailbox %q: %w", t.account, t.mailbox, store.ErrNoSuchMailbox)
		}
		if err != nil {
			return nil, err
		}
		_, err = w.exec(sqlInsertMessage,
			dl.MailboxID, dl.UID, modseq, t.bits, t.keywords, t.date, d.Blob.Size, blobRow)
		if err != nil {
			return nil, fmt.Errorf("insert message: %w", err)
		}
		out[i] = dl
	}
	now := nanotime.Encode(w.s.now())
	for _, q := range queue {
		var id int64
		err := w.queryRow(`INSERT INTO queue (blob_id, mail_from, domain, recipients, dsn_ret, dsn_envid, next_attempt, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			blobRow, d.From, q.domain, q.recipients, d.DSN.Ret, d.DSN.EnvID, now, now).Scan(&id)
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		if _, err := w.exec(`INSERT INTO events (queue_id, time, kind, detail) VALUES (?, ?, 'queued', ?)`,
			id, now, "to "+q.domain); err != nil {
			return nil, fmt.Errorf("queue event: %w", err)
		}
	}
	return out, nil
}
