package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/flagset"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// uidList encodes UIDs as a JSON array for "uid IN (SELECT value FROM
// json_each(?))": one bound parameter whatever the number of UIDs.
func uidList(uids []uint32) string {
	b := make([]byte, 0, 2+len(uids)*6)
	b = append(b, '[')
	for i, u := range uids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(u), 10)
	}
	return string(append(b, ']'))
}

const inUIDs = `uid IN (SELECT value FROM json_each(?))`

// mailboxExists tells an empty mailbox from a missing one.
func (s *Store) mailboxExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int64) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM mailboxes WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("mailbox %d: %w", id, store.ErrNoSuchMailbox)
	}
	return err
}

// ListMessages implements store.Store. It reads through the driver's
// own rows, without database/sql's per-row locking and per-column
// conversions: a 10,000-message mailbox is listed at every SELECT.
func (s *Store) ListMessages(ctx context.Context, mailboxID int64) ([]store.MessageMeta, error) {
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	defer conn.Close()
	var out []store.MessageMeta
	err = conn.Raw(func(dc any) error {
		q, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot query", dc)
		}
		rows, err := q.QueryContext(ctx, `SELECT uid, modseq, flags, keywords, size FROM messages WHERE mailbox_id = ? ORDER BY uid`,
			[]driver.NamedValue{{Ordinal: 1, Value: mailboxID}})
		if err != nil {
			return err
		}
		defer rows.Close()
		dest := make([]driver.Value, 5)
		for {
			if err := rows.Next(dest); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			uid, _ := dest[0].(int64)
			modseq, _ := dest[1].(int64)
			bits, _ := dest[2].(int64)
			size, _ := dest[4].(int64)
			m := store.MessageMeta{UID: uint32(uid), ModSeq: uint64(modseq), Size: size}
			kw, _ := dest[3].(string)
			if bits != 0 || kw != "" {
				m.Flags = flagset.Load(bits, kw).List()
			}
			out = append(out, m)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	if len(out) == 0 {
		if err := s.mailboxExists(ctx, conn, mailboxID); err != nil {
			return nil, fmt.Errorf("list messages: %w", err)
		}
	}
	return out, nil
}

// scanMetas reads (uid, modseq, flags, keywords, size) rows. It scans into
// int64s: database/sql converts to uint32/uint64 through strconv, which
// was most of the cost of listing a big mailbox.
func scanMetas(rows *sql.Rows) ([]store.MessageMeta, error) {
	var out []store.MessageMeta
	var uid, modseq, bits, size int64
	var kw sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&uid, &modseq, &bits, &kw, &size); err != nil {
			return nil, err
		}
		m := store.MessageMeta{UID: uint32(uid), ModSeq: uint64(modseq), Size: size}
		if bits != 0 || len(kw) != 0 {
			m.Flags = flagset.Load(bits, string(kw)).List()
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// GetMessages implements store.Store.
func (s *Store) GetMessages(ctx context.Context, mailboxID int64, uids []uint32) ([]store.Message, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, b.sha, b.info
		FROM messages m JOIN blobs b ON b.id = m.blob_id
		WHERE m.mailbox_id = ? AND m.`+inUIDs+` ORDER BY m.uid`, mailboxID, uidList(uids))
	if err != nil {
		return nil, fmt.Errorf("get messages: %w", err)
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m := store.Message{MailboxID: mailboxID}
		var bits, date int64
		var kw string
		var info sql.NullString
		var sha []byte
		if err := rows.Scan(&m.UID, &m.ModSeq, &bits, &kw, &date, &m.Size, &sha, &info); err != nil {
			return nil, fmt.Errorf("get messages: %w", err)
		}
		m.BlobID = hex.EncodeToString(sha)
		m.Flags = flagset.Load(bits, kw).List()
		m.InternalDate = nanotime.Decode(date)
		if info.Valid {
			m.Info = new(msginfo.Info)
			if err := json.Unmarshal([]byte(info.String), m.Info); err != nil {
				return nil, fmt.Errorf("get messages: uid %d: bad message info: %w", m.UID, err)
			}
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ChangesSince implements store.Store. The three reads share one read
// transaction, hence one snapshot.
func (s *Store) ChangesSince(ctx context.Context, mailboxID int64, modseq uint64) (store.Changes, error) {
	var c store.Changes
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, `SELECT highestmodseq, uidnext FROM mailboxes WHERE id = ?`, mailboxID).Scan(&c.HighestModSeq, &c.UIDNext)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("changes: mailbox %d: %w", mailboxID, store.ErrNoSuchMailbox)
	}
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT uid, modseq, flags, keywords, size FROM messages
		WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mailboxID, modseq)
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	c.Changed, err = scanMetas(rows)
	rows.Close()
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT uid FROM tombstones WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mailboxID, modseq)
	if err != nil {
		return c, fmt.Errorf("changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			return c, fmt.Errorf("changes: %w", err)
		}
		c.Vanished = append(c.Vanished, uid)
	}
	return c, rows.Err()
}

// StoreFlags implements store.Store. Each message whose flags actually
// change gets its own new MODSEQ; one whose flags stay the same keeps its
// MODSEQ and is still reported in updated.
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
		mb, err := w.mailboxByID(mailboxID)
		if err != nil {
			return err
		}
		rows, err := w.query(`SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = ? AND `+inUIDs+` ORDER BY uid`,
			mailboxID, uidList(uids))
		if err != nil {
			return err
		}
		metas, err := scanMetasRaw(rows)
		rows.Close()
		if err != nil {
			return err
		}
		// One statement for the whole loop: a STORE can touch every
		// message of a big mailbox.
		upd, err := w.tx.Prepare(`UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		highest := mb.HighestModSeq
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
				modseq = highest
				if _, err := upd.Exec(next.Bits, kw, modseq, mailboxID, m.uid); err != nil {
					return err
				}
			}
			updated = append(updated, store.MessageMeta{UID: m.uid, ModSeq: modseq, Flags: next.List()})
		}
		if highest != mb.HighestModSeq {
			if _, err := w.exec(`UPDATE mailboxes SET highestmodseq = ? WHERE id = ?`, highest, mailboxID); err != nil {
				return err
			}
			w.touch(mb.AccountID)
		}
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

func scanMetasRaw(rows *sql.Rows) ([]rawMeta, error) {
	var out []rawMeta
	for rows.Next() {
		var m rawMeta
		if err := rows.Scan(&m.uid, &m.modseq, &m.bits, &m.keywords); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Expunge implements store.Store.
func (s *Store) Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	var removed []uint32
	err := s.write(ctx, func(w *wtx) error {
		mb, err := w.mailboxByID(mailboxID)
		if err != nil {
			return err
		}
		removed, err = w.expunge(mb, uidList(uids))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expunge: %w", err)
	}
	return removed, nil
}

// expunge removes the listed messages of mb, leaving tombstones that each
// take a new MODSEQ, releases their blobs and quota, and returns the UIDs
// removed.
func (w *wtx) expunge(mb store.Mailbox, uids string) ([]uint32, error) {
	rows, err := w.query(`SELECT uid FROM messages WHERE mailbox_id = ? AND `+inUIDs+` ORDER BY uid`, mb.ID, uids)
	if err != nil {
		return nil, err
	}
	var removed []uint32
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, err
		}
		removed = append(removed, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(removed) == 0 {
		return nil, err
	}
	if err := w.releaseMessages(`m.mailbox_id = ? AND m.`+inUIDs, mb.ID, uids); err != nil {
		return nil, err
	}
	_, err = w.exec(`INSERT OR REPLACE INTO tombstones (mailbox_id, uid, modseq)
		SELECT mailbox_id, uid, ? + row_number() OVER (ORDER BY uid) FROM messages
		WHERE mailbox_id = ? AND `+inUIDs, mb.HighestModSeq, mb.ID, uids)
	if err != nil {
		return nil, fmt.Errorf("tombstones: %w", err)
	}
	if _, err := w.exec(`DELETE FROM messages WHERE mailbox_id = ? AND `+inUIDs, mb.ID, uids); err != nil {
		return nil, err
	}
	if _, err := w.exec(`UPDATE mailboxes SET highestmodseq = highestmodseq + ? WHERE id = ?`, len(removed), mb.ID); err != nil {
		return nil, err
	}
	w.touch(mb.AccountID)
	return removed, nil
}

func (w *wtx) allUIDs(mailboxID int64) ([]uint32, error) {
	rows, err := w.query(`SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid`, mailboxID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Copy implements store.Store.
func (s *Store) Copy(ctx context.Context, srcMailboxID int64, uids []uint32, dstMailboxID int64) (src, dst []uint32, err error) {
	err = s.write(ctx, func(w *wtx) error {
		src, dst, err = w.copyMessages(srcMailboxID, uids, dstMailboxID, false)
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
		src, dst, err = w.copyMessages(srcMailboxID, uids, dstMailboxID, true)
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
func (w *wtx) copyMessages(srcID int64, uids []uint32, dstID int64, move bool) (src, dst []uint32, err error) {
	smb, err := w.mailboxByID(srcID)
	if err != nil {
		return nil, nil, err
	}
	dmb, err := w.mailboxByID(dstID)
	if err != nil {
		return nil, nil, err
	}
	list := uidList(uids)
	rows, err := w.query(`SELECT uid FROM messages WHERE mailbox_id = ? AND `+inUIDs+` ORDER BY uid`, srcID, list)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, nil, err
		}
		src = append(src, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(src) == 0 {
		return nil, nil, err
	}
	n := uint32(len(src))
	if uint64(dmb.UIDNext)+uint64(n) > 1<<32-1 {
		return nil, nil, fmt.Errorf("%w: UIDs exhausted in mailbox %d", store.ErrInvalid, dstID)
	}
	_, err = w.exec(`INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, blob_id)
		SELECT ?, ? + row_number() OVER (ORDER BY uid) - 1, ? + row_number() OVER (ORDER BY uid),
			flags, keywords, internal_date, size, blob_id
		FROM messages WHERE mailbox_id = ? AND `+inUIDs,
		dstID, dmb.UIDNext, dmb.HighestModSeq, srcID, list)
	if err != nil {
		return nil, nil, fmt.Errorf("copy messages: %w", err)
	}
	for i := range n {
		dst = append(dst, dmb.UIDNext+i)
	}
	if _, err := w.exec(`UPDATE mailboxes SET uidnext = uidnext + ?, highestmodseq = highestmodseq + ? WHERE id = ?`,
		n, n, dstID); err != nil {
		return nil, nil, err
	}
	var added int64
	err = w.queryRow(`SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ? AND `+inUIDs, srcID, list).Scan(&added)
	if err != nil {
		return nil, nil, err
	}
	if _, err := w.exec(`UPDATE blobs SET refcount = refcount + r.n
		FROM (SELECT blob_id AS id, count(*) AS n FROM messages WHERE mailbox_id = ? AND `+inUIDs+` GROUP BY blob_id) AS r
		WHERE blobs.id = r.id`, srcID, list); err != nil {
		return nil, nil, err
	}
	var used, quota int64
	err = w.queryRow(sqlChargeAccount, added, dmb.AccountID).Scan(&used, &quota)
	if err != nil {
		return nil, nil, err
	}
	netGrowth := !move || smb.AccountID != dmb.AccountID
	if netGrowth && quota > 0 && used > quota {
		return nil, nil, fmt.Errorf("account %d: %w", dmb.AccountID, store.ErrQuota)
	}
	w.touch(dmb.AccountID)
	if move {
		if smb.ID == dmb.ID {
			// The fresh copies took new UIDs above; reload so the
			// expunge below starts from the current HIGHESTMODSEQ.
			if smb, err = w.mailboxByID(srcID); err != nil {
				return nil, nil, err
			}
		}
		if _, err := w.expunge(smb, list); err != nil {
			return nil, nil, err
		}
	}
	return src, dst, nil
}
