package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
)

// Deliver implements store.Store: one transaction files the body into
// every local target and queues it for every remote domain. Concurrent
// deliveries commit independently; PostgreSQL flushes their commits
// together.
func (s *Store) Deliver(ctx context.Context, d *store.Delivery) ([]store.Delivered, error) {
	if d == nil || d.Blob == nil {
		return nil, fmt.Errorf("deliver: %w: no body", store.ErrInvalid)
	}
	if len(d.Local) == 0 && len(d.Remote) == 0 {
		return nil, fmt.Errorf("deliver: %w: no recipients", store.ErrInvalid)
	}
	if !validText(d.From) {
		return nil, fmt.Errorf("deliver: %w: sender %q", store.ErrInvalid, d.From)
	}
	targets := make([]target, len(d.Local))
	for i, t := range d.Local {
		name, err := mailboxName(t.Mailbox)
		if err != nil {
			return nil, fmt.Errorf("deliver: %w", err)
		}
		fs, err := parseFlags(t.Flags)
		if err != nil {
			return nil, fmt.Errorf("deliver: %w", err)
		}
		date := t.InternalDate
		if date.IsZero() {
			date = s.now()
		}
		targets[i] = target{index: i, account: t.AccountID, mailbox: name, bits: fs.bits, keywords: fs.stored(), date: unixNano(date)}
	}
	// Lock order: accounts by id, then their mailboxes.
	slices.SortFunc(targets, func(a, b target) int {
		return cmp.Or(cmp.Compare(a.account, b.account), strings.Compare(a.mailbox, b.mailbox))
	})
	queue, err := groupByDomain(d.Remote)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	var out []store.Delivered
	err = s.write(ctx, func(w *wtx) error {
		var err error
		out, err = w.deliver(d, targets, queue)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	return out, nil
}

// validText reports whether PostgreSQL can store s as text.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// cleanText makes diagnostic text (a remote server's reply) storable.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

type target struct {
	index    int // in Delivery.Local
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

// groupByDomain makes one queue entry per destination domain, in the
// order the domains first appear, so the relay can send each domain its
// recipients in one transaction.
func groupByDomain(rcpts []store.QueueRecipient) ([]queueGroup, error) {
	var order []string
	by := make(map[string][]store.QueueRecipient)
	for _, r := range rcpts {
		dom, err := addressDomain(r.Address)
		if err != nil {
			return nil, err
		}
		dom = strings.ToLower(dom)
		if !validText(dom) {
			return nil, fmt.Errorf("%w: domain %q", store.ErrInvalid, dom)
		}
		if _, ok := by[dom]; !ok {
			order = append(order, dom)
		}
		by[dom] = append(by[dom], r)
	}
	out := make([]queueGroup, len(order))
	for i, dom := range order {
		j, err := json.Marshal(by[dom])
		if err != nil {
			return nil, err
		}
		out[i] = queueGroup{domain: dom, recipients: string(j)}
	}
	return out, nil
}

const (
	sqlChargeAccount = `UPDATE accounts SET used_bytes = used_bytes + $1 WHERE id = $2 RETURNING used_bytes, quota_bytes`
	sqlNextUID       = `UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
		WHERE account_id = $1 AND name = $2 RETURNING id, uidvalidity, uidnext - 1, highestmodseq`
	sqlInsertMessage = `INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, blob_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
)

// deliver runs in the transaction; targets are in lock order.
func (w *wtx) deliver(d *store.Delivery, targets []target, queue []queueGroup) ([]store.Delivered, error) {
	// Charge each account once with everything this delivery adds to it;
	// the UPDATE takes the account's lock.
	for i := 0; i < len(targets); {
		id := targets[i].account
		j := i
		for j < len(targets) && targets[j].account == id {
			j++
		}
		var used, quota int64
		err := w.queryRow(sqlChargeAccount, int64(j-i)*d.Blob.Size, id).Scan(&used, &quota)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("account %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if d.EnforceQuota && quota > 0 && used > quota {
			return nil, fmt.Errorf("account %d: %w", id, store.ErrQuota)
		}
		w.touch(id)
		i = j
	}
	out := make([]store.Delivered, len(targets))
	modseqs := make([]int64, len(targets))
	for k, t := range targets {
		dl := store.Delivered{AccountID: t.account}
		var uidvalidity, uid int64
		err := w.queryRow(sqlNextUID, t.account, t.mailbox).Scan(&dl.MailboxID, &uidvalidity, &uid, &modseqs[k])
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("account %d mailbox %q: %w", t.account, t.mailbox, store.ErrNoSuchMailbox)
		}
		if err != nil {
			return nil, err
		}
		if uid > 1<<32-1 {
			return nil, fmt.Errorf("%w: UIDs exhausted in mailbox %d", store.ErrInvalid, dl.MailboxID)
		}
		dl.UIDValidity, dl.UID = uint32(uidvalidity), uint32(uid)
		out[t.index] = dl
	}
	blobRow, err := w.addBlobRefs(d.Blob, d.Info, len(targets)+len(queue))
	if err != nil {
		return nil, err
	}
	for k, t := range targets {
		dl := out[t.index]
		_, err := w.exec(sqlInsertMessage,
			dl.MailboxID, int64(dl.UID), modseqs[k], t.bits, t.keywords, t.date, d.Blob.Size, blobRow)
		if err != nil {
			return nil, fmt.Errorf("insert message: %w", err)
		}
	}
	now := unixNano(w.s.now())
	for _, q := range queue {
		var id int64
		err := w.queryRow(`INSERT INTO queue (blob_id, mail_from, domain, recipients, dsn_ret, dsn_envid, next_attempt, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id`,
			blobRow, d.From, q.domain, q.recipients, cleanText(d.DSN.Ret), cleanText(d.DSN.EnvID), now).Scan(&id)
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		if _, err := w.exec(`INSERT INTO events (queue_id, time, kind, detail) VALUES ($1, $2, 'queued', $3)`,
			id, now, "to "+q.domain); err != nil {
			return nil, fmt.Errorf("queue event: %w", err)
		}
	}
	return out, nil
}
