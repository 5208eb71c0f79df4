package sqlite

import (
	"context"
	"fmt"
	"os"
)

// invariants are queries that return one row (a description) per
// problem. Each is an invariant the write paths maintain.
var invariants = []struct{ name, query string }{
	{"uid not below uidnext", `SELECT format('mailbox %d: message uid %d >= uidnext %d', b.id, m.uid, b.uidnext)
		FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.uid >= b.uidnext OR m.uid < 1`},
	{"message modseq", `SELECT format('mailbox %d: message uid %d modseq %d > highestmodseq %d', b.id, m.uid, m.modseq, b.highestmodseq)
		FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.modseq > b.highestmodseq`},
	{"tombstone", `SELECT format('mailbox %d: tombstone uid %d modseq %d (uidnext %d, highestmodseq %d)', b.id, t.uid, t.modseq, b.uidnext, b.highestmodseq)
		FROM tombstones t JOIN mailboxes b ON b.id = t.mailbox_id WHERE t.uid >= b.uidnext OR t.modseq > b.highestmodseq`},
	{"tombstone of live message", `SELECT format('mailbox %d: uid %d is both a message and a tombstone', t.mailbox_id, t.uid)
		FROM tombstones t JOIN messages m USING (mailbox_id, uid)`},
	{"refcount", `SELECT format('blob %s: refcount %d, referenced %d times', lower(hex(b.sha)), b.refcount, coalesce(r.n, 0))
		FROM blobs b LEFT JOIN (
			SELECT id, sum(n) AS n FROM (
				SELECT blob_id AS id, count(*) AS n FROM messages GROUP BY blob_id
				UNION ALL SELECT blob_id, count(*) FROM queue GROUP BY blob_id)
			GROUP BY id) r ON r.id = b.id
		WHERE b.refcount != coalesce(r.n, 0)`},
	{"dangling blob reference", `SELECT format('mailbox %d uid %d: blob %d missing', m.mailbox_id, m.uid, m.blob_id)
		FROM messages m LEFT JOIN blobs b ON b.id = m.blob_id WHERE b.id IS NULL
		UNION ALL SELECT format('queue %d: blob %d missing', q.id, q.blob_id)
		FROM queue q LEFT JOIN blobs b ON b.id = q.blob_id WHERE b.id IS NULL`},
	{"message size", `SELECT format('mailbox %d uid %d: size %d, blob %s size %d', m.mailbox_id, m.uid, m.size, lower(hex(b.sha)), b.size)
		FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.size != b.size`},
	{"inline blob", `SELECT format('blob %s: inline data length %d, size %d', lower(hex(sha)), length(data), size)
		FROM blobs WHERE in_file = 0 AND (data IS NULL OR length(data) != size)`},
	{"used bytes", `SELECT format('account %d: used_bytes %d, messages total %d', a.id, a.used_bytes, coalesce(u.n, 0))
		FROM accounts a LEFT JOIN (
			SELECT b.account_id AS id, sum(m.size) AS n FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id GROUP BY b.account_id
		) u ON u.id = a.id WHERE a.used_bytes != coalesce(u.n, 0)`},
}

// Check implements store.Store.
func (s *Store) Check(ctx context.Context) ([]string, error) {
	var problems []string
	rows, err := s.rdb.QueryContext(ctx, `PRAGMA quick_check`)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return nil, fmt.Errorf("check: %w", err)
		}
		if r != "ok" {
			problems = append(problems, "quick_check: "+r)
		}
	}
	rows.Close()
	for _, inv := range invariants {
		found, err := s.queryStrings(ctx, inv.query)
		if err != nil {
			return problems, fmt.Errorf("check %s: %w", inv.name, err)
		}
		problems = append(problems, found...)
	}
	files, err := s.queryStrings(ctx, `SELECT lower(hex(sha)) || ' ' || size FROM blobs WHERE in_file = 1`)
	if err != nil {
		return problems, fmt.Errorf("check blob files: %w", err)
	}
	for _, f := range files {
		var id string
		var size int64
		fmt.Sscan(f, &id, &size)
		fi, err := os.Stat(s.blobPath(id))
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("blob %s: file: %v", id, err))
		case fi.Size() != size:
			problems = append(problems, fmt.Sprintf("blob %s: file size %d, recorded %d", id, fi.Size(), size))
		}
	}
	return problems, nil
}

func (s *Store) queryStrings(ctx context.Context, q string) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
