package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/flagset"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// uidArray converts UIDs for "uid = ANY($n)": one bound parameter
// whatever their number; bigint because a UID is unsigned 32-bit.
func uidArray(uids []uint32) []int64 {
	out := make([]int64, len(uids))
	for i, u := range uids {
		out[i] = int64(u)
	}
	return out
}

func toUIDs(v []int64) []uint32 {
	if len(v) == 0 {
		return nil
	}
	out := make([]uint32, len(v))
	for i, u := range v {
		out[i] = uint32(u)
	}
	return out
}

// mailboxExists tells an empty mailbox from a missing one.
func mailboxExists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id int64) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM mailboxes WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("mailbox %d: %w", id, store.ErrNoSuchMailbox)
	}
	return err
}

// scanMetas reads (uid, modseq, flags, keywords, size) rows.
func scanMetas(rows pgx.Rows) ([]store.MessageMeta, error) {
	defer rows.Close()
	var out []store.MessageMeta
	var uid, modseq, size int64
	var bits int32
	var kw string
	for rows.Next() {
		if err := rows.Scan(&uid, &modseq, &bits, &kw, &size); err != nil {
			return nil, err
		}
		m := store.MessageMeta{UID: uint32(uid), ModSeq: uint64(modseq), Size: size}
		if bits != 0 || kw != "" {
			m.Flags = flagset.Load(int64(bits), kw).List()
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ListMessages implements store.Store.
func (s *Store) ListMessages(ctx context.Context, mailboxID int64) ([]store.MessageMeta, error) {
	rows, err := s.pool.Query(ctx, `SELECT uid, modseq, flags, keywords, size FROM messages WHERE mailbox_id = $1 ORDER BY uid`, mailboxID)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	out, err := scanMetas(rows)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	if len(out) == 0 {
		if err := mailboxExists(ctx, s.pool, mailboxID); err != nil {
			return nil, fmt.Errorf("list messages: %w", err)
		}
	}
	return out, nil
}

// GetMessages implements store.Store.
func (s *Store) GetMessages(ctx context.Context, mailboxID int64, uids []uint32) ([]store.Message, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, b.sha, b.info
		FROM messages m JOIN blobs b ON b.id = m.blob_id
		WHERE m.mailbox_id = $1 AND m.uid = ANY($2) ORDER BY m.uid`, mailboxID, uidArray(uids))
	if err != nil {
		return nil, fmt.Errorf("get messages: %w", err)
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m := store.Message{MailboxID: mailboxID}
		var uid, modseq, date int64
		var bits int32
		var kw string
		var info *string
		var sha []byte
		if err := rows.Scan(&uid, &modseq, &bits, &kw, &date, &m.Size, &sha, &info); err != nil {
			return nil, fmt.Errorf("get messages: %w", err)
		}
		m.UID, m.ModSeq = uint32(uid), uint64(modseq)
		m.MessageMeta.Size = m.Size
		m.BlobID = hex.EncodeToString(sha)
		m.Flags = flagset.Load(int64(bits), kw).List()
		m.InternalDate = nanotime.Decode(date)
		if info != nil {
			m.Info = new(msginfo.Info)
			if err := json.Unmarshal([]byte(*info), m.Info); err != nil {
				return nil, fmt.Errorf("get messages: uid %d: bad message info: %w", m.UID, err)
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get messages: %w", err)
	}
	return out, nil
}

// ChangesSince implements store.Store. The three reads share one
// repeatable-read transaction, hence one snapshot.
func (s *Store) ChangesSince(ctx context.Context, mailboxID int64, modseq uint64) (store.Changes, error) {
	var c store.Changes
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var highest, uidnext int64
	err = tx.QueryRow(ctx, `SELECT highestmodseq, uidnext FROM mailboxes WHERE id = $1`, mailboxID).Scan(&highest, &uidnext)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("changes: mailbox %d: %w", mailboxID, store.ErrNoSuchMailbox)
	}
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	c.HighestModSeq, c.UIDNext = uint64(highest), uint32(uidnext)
	rows, err := tx.Query(ctx, `SELECT uid, modseq, flags, keywords, size FROM messages
		WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid`, mailboxID, int64(modseq))
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	if c.Changed, err = scanMetas(rows); err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	vanished, err := collect[int64](tx.Query(ctx, `SELECT uid FROM tombstones WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid`,
		mailboxID, int64(modseq)))
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	c.Vanished = toUIDs(vanished)
	return c, nil
}

// StoreFlags implements store.Store. Each message whose flags actually
// change gets its own new MODSEQ; one whose flags stay the same keeps its
// MODSEQ and is still reported in updated. Only the mailbox's row is
// locked: a flag change touches no account or body.
func (s *Store) StoreFlags(ctx context.Context, mailboxID int64, uids []uint32, op store.FlagOp, flags []string, unchangedSince uint64) (updated []store.MessageMeta, failed []uint32, err error) {
	arg, err := flagset.Parse(flags)
	if err != nil {
		return nil, nil, fmt.Errorf("store flags: %w", err)
	}
	if op != store.FlagsAdd && op != store.FlagsRemove && op != store.FlagsReplace {
		return nil, nil, fmt.Errorf("store flags: %w: op %d", store.ErrInvalid, op)
	}
	err = s.write(ctx, func(w *wtx) error {
		updated, failed = nil, nil
		var accountID, highest int64
		err := w.queryRow(`SELECT account_id, highestmodseq FROM mailboxes WHERE id = $1 FOR NO KEY UPDATE`, mailboxID).
			Scan(&accountID, &highest)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("mailbox %d: %w", mailboxID, store.ErrNoSuchMailbox)
		}
		if err != nil {
			return err
		}
		rows, err := w.query(`SELECT uid, modseq, flags, keywords, 0::bigint FROM messages
			WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid`, mailboxID, uidArray(uids))
		if err != nil {
			return err
		}
		metas, err := scanRaw(rows)
		if err != nil {
			return err
		}
		start := highest
		var chUIDs, chModseqs, chBits []int64
		var chKeywords []string
		for _, m := range metas {
			if unchangedSince > 0 && m.modseq > unchangedSince {
				failed = append(failed, m.uid)
				continue
			}
			cur := flagset.Load(m.bits, m.keywords)
			next := cur.Apply(op, arg)
			modseq := m.modseq
			kw := next.Stored()
			if !next.Equal(cur) {
				highest++
				modseq = uint64(highest)
				chUIDs = append(chUIDs, int64(m.uid))
				chModseqs = append(chModseqs, highest)
				chBits = append(chBits, next.Bits)
				chKeywords = append(chKeywords, kw)
			}
			updated = append(updated, store.MessageMeta{UID: m.uid, ModSeq: modseq, Flags: next.List()})
		}
		if highest == start {
			return nil
		}
		// One statement for every change: a STORE can touch every message
		// of a big mailbox.
		if _, err := w.exec(`UPDATE messages m SET flags = c.flags, keywords = c.Keywords, modseq = c.modseq
			FROM unnest($2::bigint[], $3::bigint[], $4::int[], $5::text[]) AS c(uid, modseq, flags, keywords)
			WHERE m.mailbox_id = $1 AND m.uid = c.uid`,
			mailboxID, chUIDs, chModseqs, chBits, chKeywords); err != nil {
			return err
		}
		if _, err := w.exec(`UPDATE mailboxes SET highestmodseq = $1 WHERE id = $2`, highest, mailboxID); err != nil {
			return err
		}
		w.touch(accountID)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store flags: %w", err)
	}
	return updated, failed, nil
}

type rawMeta struct {
	uid      uint32
	modseq   uint64
	bits     int64
	keywords string
}

// scanRaw reads (uid, modseq, flags, keywords, _) rows keeping the
// stored flag form.
func scanRaw(rows pgx.Rows) ([]rawMeta, error) {
	defer rows.Close()
	var out []rawMeta
	for rows.Next() {
		var uid, modseq, skip int64
		var bits int32
		var m rawMeta
		if err := rows.Scan(&uid, &modseq, &bits, &m.keywords, &skip); err != nil {
			return nil, err
		}
		m.uid, m.modseq, m.bits = uint32(uid), uint64(modseq), int64(bits)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Expunge implements store.Store.
func (s *Store) Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	var removed []uint32
	err := s.write(ctx, func(w *wtx) error {
		mb, err := w.lockMailbox(mailboxID)
		if err != nil {
			return err
		}
		removed, err = w.expunge(mb, uidArray(uids))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expunge: %w", err)
	}
	return removed, nil
}

// expunge removes the listed messages of mb, leaving tombstones that each
// take a new MODSEQ, releases their blobs and quota, and returns the UIDs
// removed. The caller holds mb's lock (and its account's).
func (w *wtx) expunge(mb store.Mailbox, uids []int64) ([]uint32, error) {
	gone, err := collect[int64](w.query(`SELECT uid FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid`, mb.ID, uids))
	if err != nil || len(gone) == 0 {
		return nil, err
	}
	if err := w.releaseMessages(`m.mailbox_id = $1 AND m.uid = ANY($2)`, mb.ID, gone); err != nil {
		return nil, err
	}
	_, err = w.exec(`INSERT INTO tombstones (mailbox_id, uid, modseq)
		SELECT $1, u.uid, $2 + u.n FROM unnest($3::bigint[]) WITH ORDINALITY AS u(uid, n)
		ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq`,
		mb.ID, int64(mb.HighestModSeq), gone)
	if err != nil {
		return nil, fmt.Errorf("tombstones: %w", err)
	}
	if _, err := w.exec(`DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)`, mb.ID, gone); err != nil {
		return nil, err
	}
	if _, err := w.exec(`UPDATE mailboxes SET highestmodseq = highestmodseq + $1 WHERE id = $2`, len(gone), mb.ID); err != nil {
		return nil, err
	}
	w.touch(mb.AccountID)
	return toUIDs(gone), nil
}

// Copy implements store.Store.
func (s *Store) Copy(ctx context.Context, srcMailboxID int64, uids []uint32, dstMailboxID int64) (src, dst []uint32, err error) {
	err = s.write(ctx, func(w *wtx) error {
		src, dst, err = w.copyMessages(srcMailboxID, uidArray(uids), dstMailboxID, false)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("copy: %w", err)
	}
	return src, dst, nil
}

// Move implements store.Store.
func (s *Store) Move(ctx context.Context, srcMailboxID int64, uids []uint32, dstMailboxID int64) (src, dst []uint32, err error) {
	err = s.write(ctx, func(w *wtx) error {
		src, dst, err = w.copyMessages(srcMailboxID, uidArray(uids), dstMailboxID, true)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("move: %w", err)
	}
	return src, dst, nil
}

// copyMessages files the listed messages of srcID into dstID with new
// UIDs and MODSEQs (same body, one more reference), and with move expunges
// the sources. A copy that adds to an account over its quota fails with
// ErrQuota (RFC 9208 §4.3.1: COPY may fail on quota).
func (w *wtx) copyMessages(srcID int64, uids []int64, dstID int64, move bool) (src, dst []uint32, err error) {
	mbs, err := w.lockMailboxes(srcID, dstID)
	if err != nil {
		return nil, nil, err
	}
	smb, dmb := mbs[srcID], mbs[dstID]
	found, err := collect[int64](w.query(`SELECT uid FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid`, srcID, uids))
	if err != nil || len(found) == 0 {
		return nil, nil, err
	}
	n := int64(len(found))
	if int64(dmb.UIDNext)+n > 1<<32-1 {
		return nil, nil, fmt.Errorf("%w: UIDs exhausted in mailbox %d", store.ErrInvalid, dstID)
	}
	if err := w.addMessageRefs(srcID, found); err != nil {
		return nil, nil, err
	}
	var added int64
	err = w.queryRow(`WITH c AS (
			INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, blob_id)
			SELECT $1, $2 + row_number() OVER (ORDER BY uid) - 1, $3 + row_number() OVER (ORDER BY uid),
				flags, keywords, internal_date, size, blob_id
			FROM messages WHERE mailbox_id = $4 AND uid = ANY($5)
			RETURNING size)
		SELECT coalesce(sum(size), 0)::bigint FROM c`,
		dstID, int64(dmb.UIDNext), int64(dmb.HighestModSeq), srcID, found).Scan(&added)
	if err != nil {
		return nil, nil, fmt.Errorf("copy messages: %w", err)
	}
	for i := range n {
		dst = append(dst, dmb.UIDNext+uint32(i))
	}
	if _, err := w.exec(`UPDATE mailboxes SET uidnext = uidnext + $1, highestmodseq = highestmodseq + $1 WHERE id = $2`,
		n, dstID); err != nil {
		return nil, nil, err
	}
	var used, quota int64
	if err := w.queryRow(sqlChargeAccount, added, dmb.AccountID).Scan(&used, &quota); err != nil {
		return nil, nil, err
	}
	netGrowth := !move || smb.AccountID != dmb.AccountID
	if netGrowth && quota > 0 && used > quota {
		return nil, nil, fmt.Errorf("account %d: %w", dmb.AccountID, store.ErrQuota)
	}
	w.touch(dmb.AccountID)
	if move {
		if smb.ID == dmb.ID {
			// The fresh copies took new UIDs and MODSEQs above; the
			// expunge below starts from the mailbox's current state.
			smb.UIDNext += uint32(n)
			smb.HighestModSeq += uint64(n)
		}
		if _, err := w.expunge(smb, found); err != nil {
			return nil, nil, err
		}
	}
	return toUIDs(found), dst, nil
}

// addMessageRefs adds one blob reference per listed message, locking the
// blobs in hash order.
func (w *wtx) addMessageRefs(mailboxID int64, uids []int64) error {
	_, err := w.exec(`SELECT 1 FROM blobs WHERE id IN (SELECT blob_id FROM messages WHERE mailbox_id = $1 AND uid = ANY($2))
		ORDER BY sha FOR NO KEY UPDATE`, mailboxID, uids)
	if err != nil {
		return fmt.Errorf("lock blobs: %w", err)
	}
	_, err = w.exec(`UPDATE blobs SET refcount = refcount + r.n
		FROM (SELECT blob_id AS id, count(*) AS n FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) GROUP BY blob_id) AS r
		WHERE blobs.id = r.id`, mailboxID, uids)
	if err != nil {
		return fmt.Errorf("add blob references: %w", err)
	}
	return nil
}
