package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// invariants are queries that return one row (a description) per
// problem: the same invariants as store/sqlite's Check, which the write
// paths maintain. UID uniqueness is the primary key's.
var invariants = []struct{ name, query string }{
	{"uid not below uidnext", `SELECT format('mailbox %s: message uid %s >= uidnext %s', b.id, m.uid, b.uidnext)
		FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.uid >= b.uidnext OR m.uid < 1`},
	{"message modseq", `SELECT format('mailbox %s: message uid %s modseq %s > highestmodseq %s', b.id, m.uid, m.modseq, b.highestmodseq)
		FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.modseq > b.highestmodseq`},
	{"tombstone", `SELECT format('mailbox %s: tombstone uid %s modseq %s (uidnext %s, highestmodseq %s)', b.id, t.uid, t.modseq, b.uidnext, b.highestmodseq)
		FROM tombstones t JOIN mailboxes b ON b.id = t.mailbox_id WHERE t.uid >= b.uidnext OR t.modseq > b.highestmodseq`},
	{"tombstone of live message", `SELECT format('mailbox %s: uid %s is both a message and a tombstone', t.mailbox_id, t.uid)
		FROM tombstones t JOIN messages m USING (mailbox_id, uid)`},
	{"refcount", `SELECT format('blob %s: refcount %s, referenced %s times', encode(b.sha, 'hex'), b.refcount, coalesce(r.n, 0))
		FROM blobs b LEFT JOIN (
			SELECT id, sum(n) AS n FROM (
				SELECT blob_id AS id, count(*) AS n FROM messages GROUP BY blob_id
				UNION ALL SELECT blob_id, count(*) FROM queue GROUP BY blob_id) u
			GROUP BY id) r ON r.id = b.id
		WHERE b.refcount != coalesce(r.n, 0)`},
	{"message size", `SELECT format('mailbox %s uid %s: size %s, blob %s size %s', m.mailbox_id, m.uid, m.size, encode(b.sha, 'hex'), b.size)
		FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.size != b.size`},
	{"blob data", `SELECT format('blob %s: data length %s, size %s', encode(sha, 'hex'), length(data), size)
		FROM blobs WHERE length(data) != size`},
	{"used bytes", `SELECT format('account %s: used_bytes %s, messages total %s', a.id, a.used_bytes, coalesce(u.n, 0))
		FROM accounts a LEFT JOIN (
			SELECT b.account_id AS id, sum(m.size) AS n FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id GROUP BY b.account_id
		) u ON u.id = a.id WHERE a.used_bytes != coalesce(u.n, 0)`},
}

// Check implements store.Store. Dangling references, which store/sqlite
// looks for, cannot exist here: foreign keys forbid them. It reads one
// snapshot, so concurrent writes do not show as problems.
func (s *Store) Check(ctx context.Context) ([]string, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return checkIn(ctx, tx)
}

// checkIn runs the invariants' queries in tx.
func checkIn(ctx context.Context, tx pgx.Tx) ([]string, error) {
	var problems []string
	for _, inv := range invariants {
		found, err := collect[string](tx.Query(ctx, inv.query))
		if err != nil {
			return problems, fmt.Errorf("check %s: %w", inv.name, err)
		}
		problems = append(problems, found...)
	}
	return problems, nil
}
