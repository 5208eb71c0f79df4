package postgres

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/flagset"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// Deliver implements store.Store: the body is filed into every local
// target and queued for every remote domain in one savepoint of a
// transaction shared with the deliveries made at the same time (group
// commit, groupcommit.go).
func (s *Store) Deliver(ctx context.Context, d *store.Delivery) ([]store.Delivered, error) {
	r, err := s.prepareDelivery(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	if err := s.commitRetried(ctx, r); err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	return r.out, nil
}

// DeliverAll implements store.Store: the deliveries travel as one request
// of the group commit (deliverReq.group) and share one savepoint, so the
// first failure undoes them all and leaves the rest of the batch alone.
func (s *Store) DeliverAll(ctx context.Context, ds []*store.Delivery) ([][]store.Delivered, error) {
	if len(ds) == 0 {
		return nil, fmt.Errorf("deliver all: %w: no deliveries", store.ErrInvalid)
	}
	rs := make([]*deliverReq, len(ds))
	for i, d := range ds {
		r, err := s.prepareDelivery(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("deliver all: message %d: %w", i+1, err)
		}
		rs[i] = r
	}
	head := rs[0]
	head.group = rs[1:]
	if err := s.commitRetried(ctx, head); err != nil {
		return nil, fmt.Errorf("deliver all: %w", err)
	}
	out := make([][]store.Delivered, len(rs))
	for i, r := range rs {
		out[i] = r.out
	}
	return out, nil
}

// prepareDelivery checks d and makes its request, with the targets in
// lock order and the body read if it is to be stored in the database.
func (s *Store) prepareDelivery(ctx context.Context, d *store.Delivery) (*deliverReq, error) {
	if d == nil || d.Blob == nil {
		return nil, fmt.Errorf("%w: no body", store.ErrInvalid)
	}
	if len(d.Local) == 0 && len(d.Remote) == 0 {
		return nil, fmt.Errorf("%w: no recipients", store.ErrInvalid)
	}
	if !validText(d.From) {
		return nil, fmt.Errorf("%w: sender %q", store.ErrInvalid, d.From)
	}
	targets := make([]target, len(d.Local))
	for i, t := range d.Local {
		name, err := mailboxName(t.Mailbox)
		if err != nil {
			return nil, err
		}
		fs, err := flagset.Parse(t.Flags)
		if err != nil {
			return nil, err
		}
		date := t.InternalDate
		if date.IsZero() {
			date = s.now()
		}
		targets[i] = target{index: i, account: t.AccountID, mailbox: name, bits: fs.Bits, keywords: fs.Stored(), date: nanotime.Encode(date)}
	}
	// Lock order: accounts by id, then their mailboxes.
	slices.SortFunc(targets, func(a, b target) int {
		return cmp.Or(cmp.Compare(a.account, b.account), strings.Compare(a.mailbox, b.mailbox))
	})
	queue, err := groupByDomain(d.Remote)
	if err != nil {
		return nil, err
	}
	r := &deliverReq{ctx: ctx, d: d, targets: targets, queue: queue}
	if r.body, err = s.blobData(ctx, d.Blob); err != nil {
		return nil, err
	}
	r.sha, _ = hex.DecodeString(d.Blob.ID)
	if d.Info != nil {
		j, err := json.Marshal(d.Info)
		if err != nil {
			return nil, fmt.Errorf("encode message info: %w", err)
		}
		r.info = new(string(j))
	}
	return r, nil
}

// commitRetried commits r (and its group), running it again after a
// conflict, then removes the spool files of the bodies now stored.
func (s *Store) commitRetried(ctx context.Context, r *deliverReq) error {
	var err error
	for try := 1; ; try++ {
		err = s.commitDelivery(r)
		if err == nil || try == maxTries || !retryable(err) || ctx.Err() != nil {
			break
		}
		backoff(try)
	}
	if err != nil {
		return classify(err)
	}
	for _, p := range r.parts() {
		if p.d.Blob.Path != "" {
			// Committed: the body is in the database, and a later
			// Deliver of the same Blob finds it there by its hash.
			os.Remove(p.d.Blob.Path)
		}
	}
	return nil
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

// groupByDomain makes one queue entry per destination domain
// (store.GroupByDomain), its recipients stored as JSON.
func groupByDomain(rcpts []store.QueueRecipient) ([]queueGroup, error) {
	groups, err := store.GroupByDomain(rcpts)
	if err != nil {
		return nil, err
	}
	out := make([]queueGroup, len(groups))
	for i, g := range groups {
		if !validText(g.Domain) {
			return nil, fmt.Errorf("%w: domain %q", store.ErrInvalid, g.Domain)
		}
		j, err := json.Marshal(g.Recipients)
		if err != nil {
			return nil, err
		}
		out[i] = queueGroup{domain: g.Domain, recipients: string(j)}
	}
	return out, nil
}

const (
	sqlChargeAccount = `UPDATE accounts SET used_bytes = used_bytes + $1 WHERE id = $2 RETURNING used_bytes, quota_bytes`
	// sqlFile takes the mailbox's next UID and MODSEQ and files the
	// message under them. The mailbox row stays locked until the commit:
	// the writers of one mailbox take turns.
	sqlFile = `WITH b AS (
			UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
			WHERE account_id = $1 AND name = $2 RETURNING id, uidvalidity, uidnext - 1 AS uid, highestmodseq)
		INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, blob_id)
		SELECT id, uid, highestmodseq, $3, $4, $5, $6, (SELECT id FROM blobs WHERE sha = $7) FROM b
		RETURNING mailbox_id, (SELECT uidvalidity FROM b), uid`
	sqlQueue = `WITH q AS (
			INSERT INTO queue (blob_id, mail_from, domain, recipients, dsn_ret, dsn_envid, next_attempt, created)
			VALUES ((SELECT id FROM blobs WHERE sha = $1), $2, $3, $4, $5, $6, $7, $7) RETURNING id)
		INSERT INTO events (queue_id, time, kind, detail) SELECT id, $7, 'queued', $8 FROM q`
)

// queueDelivery adds r's statements to b, in lock order: accounts, the
// body, the mailboxes. Refusals (quota, a missing mailbox) show only in
// the results, read by readDelivery.
func (s *Store) queueDelivery(b *pgx.Batch, r *deliverReq, now int64) {
	d := r.d
	// Charge each account once with everything this delivery adds to it.
	r.charged = r.charged[:0]
	for i := 0; i < len(r.targets); {
		id := r.targets[i].account
		j := i
		for j < len(r.targets) && r.targets[j].account == id {
			j++
		}
		b.Queue(sqlChargeAccount, int64(j-i)*d.Blob.Size, id)
		r.charged = append(r.charged, id)
		i = j
	}
	b.Queue(sqlAddBlob, r.sha, d.Blob.Size, len(r.targets)+len(r.queue), r.body, r.info)
	for _, t := range r.targets {
		b.Queue(sqlFile, t.account, t.mailbox, t.bits, t.keywords, t.date, d.Blob.Size, r.sha)
	}
	for _, q := range r.queue {
		b.Queue(sqlQueue, r.sha, d.From, q.domain, q.recipients, cleanText(d.DSN.Ret), cleanText(d.DSN.EnvID), now, "to "+q.domain)
	}
	if len(r.charged) > 0 {
		// Discarded with the savepoint if the delivery is undone.
		ids := make([]string, len(r.charged))
		for i, id := range r.charged {
			ids[i] = fmt.Sprintf("%s:%d", s.node, id)
		}
		b.Queue(sqlNotify, s.channel, ids)
	}
}

// readDelivery reads the results of queueDelivery's statements and sets
// r.out, or returns why the delivery failed.
func readDelivery(br pgx.BatchResults, r *deliverReq) error {
	for _, id := range r.charged {
		var used, quota int64
		err := br.QueryRow().Scan(&used, &quota)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("account %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if r.d.EnforceQuota && quota > 0 && used > quota {
			return fmt.Errorf("account %d: %w", id, store.ErrQuota)
		}
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("add blob: %w", err)
	}
	out := make([]store.Delivered, len(r.targets))
	for _, t := range r.targets {
		dl := store.Delivered{AccountID: t.account}
		var uidvalidity, uid int64
		err := br.QueryRow().Scan(&dl.MailboxID, &uidvalidity, &uid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("account %d mailbox %q: %w", t.account, t.mailbox, store.ErrNoSuchMailbox)
		}
		if err != nil {
			return fmt.Errorf("file message: %w", err)
		}
		if uid > 1<<32-1 {
			return fmt.Errorf("%w: UIDs exhausted in mailbox %d", store.ErrInvalid, dl.MailboxID)
		}
		dl.UIDValidity, dl.UID = uint32(uidvalidity), uint32(uid)
		out[t.index] = dl
	}
	for range r.queue {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	if len(r.charged) > 0 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	r.out = out
	return nil
}
