package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/flagset"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// mailboxName checks a mailbox name and spells INBOX canonically (it is
// case-insensitive, RFC 3501 §5.1).
func mailboxName(name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	if name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") ||
		strings.Contains(name, "//") || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\r\n") {
		return "", fmt.Errorf("%w: bad mailbox name %q", store.ErrInvalid, name)
	}
	return name, nil
}

func validSpecialUse(su string) bool {
	switch su {
	case "", store.SpecialSent, store.SpecialDrafts, store.SpecialTrash, store.SpecialJunk, store.SpecialArchive,
		`\All`, `\Flagged`:
		return true
	}
	return false
}

const mailboxCols = `id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed, created`

func scanMailbox(sc pgx.Row, extra ...any) (store.Mailbox, error) {
	var m store.Mailbox
	var uidvalidity, uidnext, created int64
	dest := append([]any{&m.ID, &m.AccountID, &m.Name, &uidvalidity, &uidnext, &m.HighestModSeq,
		&m.SpecialUse, &m.Subscribed, &created}, extra...)
	err := sc.Scan(dest...)
	m.UIDValidity, m.UIDNext = uint32(uidvalidity), uint32(uidnext)
	m.Created = nanotime.Decode(created)
	return m, err
}

// createMailbox inserts a mailbox; the caller has checked the name.
func (w *wtx) createMailbox(accountID int64, name, specialUse string, subscribed bool) (store.Mailbox, error) {
	uv, err := w.nextUIDValidity()
	if err != nil {
		return store.Mailbox{}, err
	}
	m := store.Mailbox{
		AccountID: accountID, Name: name, UIDValidity: uv, UIDNext: 1, HighestModSeq: 1,
		SpecialUse: specialUse, Subscribed: subscribed, Created: w.s.now().UTC(),
	}
	err = w.queryRow(`INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed, created)
		VALUES ($1, $2, $3, 1, 1, $4, $5, $6) RETURNING id`,
		accountID, name, int64(uv), specialUse, subscribed, nanotime.Encode(m.Created)).Scan(&m.ID)
	if pgCode(err) == codeUniqueViolation {
		return m, fmt.Errorf("create mailbox %q: %w", name, store.ErrExists)
	}
	if err != nil {
		return m, fmt.Errorf("create mailbox %s: %w", name, err)
	}
	w.touch(accountID)
	return m, nil
}

// lockMailboxes locks the mailboxes' rows, after their accounts' rows
// (the lock order of the package comment), and returns them by id.
// ErrNoSuchMailbox if one is missing.
func (w *wtx) lockMailboxes(ids ...int64) (map[int64]store.Mailbox, error) {
	accounts, err := collect[int64](w.query(`SELECT DISTINCT account_id FROM mailboxes WHERE id = ANY($1) ORDER BY 1`, ids))
	if err != nil {
		return nil, err
	}
	if err := w.lockAccounts(accounts...); err != nil {
		return nil, err
	}
	rows, err := w.query(`SELECT `+mailboxCols+` FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[int64]store.Mailbox, len(ids))
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, err
		}
		out[m.ID] = m
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			return nil, fmt.Errorf("mailbox %d: %w", id, store.ErrNoSuchMailbox)
		}
	}
	return out, nil
}

// lockMailbox is lockMailboxes for one.
func (w *wtx) lockMailbox(id int64) (store.Mailbox, error) {
	m, err := w.lockMailboxes(id)
	if err != nil {
		return store.Mailbox{}, err
	}
	return m[id], nil
}

// mailboxByName finds a mailbox in the transaction; the caller holds
// the account's lock.
func (w *wtx) mailboxByName(accountID int64, name string) (store.Mailbox, error) {
	m, err := scanMailbox(w.queryRow(`SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = $1 AND name = $2 FOR NO KEY UPDATE`, accountID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("mailbox %q: %w", name, store.ErrNoSuchMailbox)
	}
	return m, err
}

// ListMailboxes implements store.Store.
func (s *Store) ListMailboxes(ctx context.Context, accountID int64) ([]store.Mailbox, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = $1 ORDER BY id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	defer rows.Close()
	var out []store.Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("list mailboxes: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// GetMailbox implements store.Store.
func (s *Store) GetMailbox(ctx context.Context, accountID int64, name string) (store.Mailbox, error) {
	name, err := mailboxName(name)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("get mailbox: %w", err)
	}
	m, err := scanMailbox(s.pool.QueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = $1 AND name = $2`, accountID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("mailbox %q: %w", name, store.ErrNoSuchMailbox)
	}
	if err != nil {
		return m, fmt.Errorf("get mailbox: %w", err)
	}
	return m, nil
}

// MailboxStatus implements store.Store. One statement, so the counts and
// the mailbox's UIDNEXT/HIGHESTMODSEQ come from the same snapshot.
func (s *Store) MailboxStatus(ctx context.Context, mailboxID int64) (store.MailboxStatus, error) {
	var st store.MailboxStatus
	var err error
	st.Mailbox, err = scanMailbox(s.pool.QueryRow(ctx, `SELECT `+mailboxCols+`, c.n, c.unseen, c.deleted, c.size
		FROM mailboxes b, (SELECT count(*) AS n,
			count(*) FILTER (WHERE flags & $1 = 0) AS unseen,
			count(*) FILTER (WHERE flags & $2 != 0) AS deleted,
			coalesce(sum(size), 0)::bigint AS size
			FROM messages WHERE mailbox_id = $3) c
		WHERE b.id = $3`, flagset.BitSeen, flagset.BitDeleted, mailboxID),
		&st.Messages, &st.Unseen, &st.Deleted, &st.Size)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("mailbox %d: %w", mailboxID, store.ErrNoSuchMailbox)
	}
	if err != nil {
		return st, fmt.Errorf("mailbox status: %w", err)
	}
	return st, nil
}

// CreateMailbox implements store.Store.
func (s *Store) CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (store.Mailbox, error) {
	name, err := mailboxName(name)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("create mailbox: %w", err)
	}
	if !validSpecialUse(specialUse) {
		return store.Mailbox{}, fmt.Errorf("create mailbox: %w: special-use %q", store.ErrInvalid, specialUse)
	}
	var m store.Mailbox
	err = s.write(ctx, func(w *wtx) error {
		if err := w.lockAccounts(accountID); err != nil {
			return fmt.Errorf("create mailbox: %w", err)
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("create mailbox %q", name),
			`SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2`, accountID, name); err != nil {
			return err
		}
		m, err = w.createMailbox(accountID, name, specialUse, false)
		return err
	})
	return m, err
}

// DeleteMailbox implements store.Store. Children are left in place, as
// RFC 3501 §6.3.4 allows when the parent is not \Noselect.
func (s *Store) DeleteMailbox(ctx context.Context, accountID int64, name string) error {
	name, err := mailboxName(name)
	if err != nil {
		return fmt.Errorf("delete mailbox: %w", err)
	}
	if name == "INBOX" {
		return fmt.Errorf("delete mailbox: %w: INBOX cannot be deleted", store.ErrInvalid)
	}
	return s.write(ctx, func(w *wtx) error {
		if err := w.lockAccounts(accountID); err != nil {
			return fmt.Errorf("delete mailbox: %w", err)
		}
		m, err := w.mailboxByName(accountID, name)
		if err != nil {
			return fmt.Errorf("delete mailbox: %w", err)
		}
		if err := w.releaseMessages(`m.mailbox_id = $1`, m.ID); err != nil {
			return fmt.Errorf("delete mailbox: %w", err)
		}
		if _, err := w.exec(`DELETE FROM mailboxes WHERE id = $1`, m.ID); err != nil {
			return fmt.Errorf("delete mailbox: %w", err)
		}
		w.touch(accountID)
		return nil
	})
}

// RenameMailbox implements store.Store.
func (s *Store) RenameMailbox(ctx context.Context, accountID int64, from, to string) error {
	from, err := mailboxName(from)
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	if to, err = mailboxName(to); err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	if from != "INBOX" && strings.HasPrefix(to+"/", from+"/") {
		return fmt.Errorf("rename mailbox: %w: %q into itself", store.ErrInvalid, from)
	}
	return s.write(ctx, func(w *wtx) error {
		if err := w.lockAccounts(accountID); err != nil {
			return fmt.Errorf("rename mailbox: %w", err)
		}
		src, err := w.mailboxByName(accountID, from)
		if err != nil {
			return fmt.Errorf("rename mailbox: %w", err)
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("rename mailbox to %q", to),
			`SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2`, accountID, to); err != nil {
			return err
		}
		w.touch(accountID)
		if from == "INBOX" {
			return w.renameInbox(src, to)
		}
		return w.renameTree(accountID, from, to)
	})
}

// renameInbox follows RFC 3501 §6.3.5: the messages move to a new mailbox
// and INBOX stays, empty; INBOX's children do not move.
func (w *wtx) renameInbox(inbox store.Mailbox, to string) error {
	dst, err := w.createMailbox(inbox.AccountID, to, "", inbox.Subscribed)
	if err != nil {
		return err
	}
	uids, err := collect[int64](w.query(`SELECT uid FROM messages WHERE mailbox_id = $1 ORDER BY uid`, inbox.ID))
	if err != nil {
		return err
	}
	_, _, err = w.copyMessages(inbox.ID, uids, dst.ID, true)
	return err
}

// renameTree renames the mailbox and every mailbox below it. As in
// store/sqlite, any new name already taken fails the whole rename.
func (w *wtx) renameTree(accountID int64, from, to string) error {
	names, err := collect[string](w.query(`SELECT name FROM mailboxes
		WHERE account_id = $1 AND (name = $2 OR starts_with(name, $3))`, accountID, from, from+"/"))
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	newNames := make([]string, len(names))
	for i, n := range names {
		newNames[i] = to + n[len(from):]
	}
	taken, err := collect[string](w.query(`SELECT name FROM mailboxes WHERE account_id = $1 AND name = ANY($2)`,
		accountID, newNames))
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	if len(taken) > 0 {
		return fmt.Errorf("rename mailbox: %q: %w", taken[0], store.ErrExists)
	}
	_, err = w.exec(`UPDATE mailboxes b SET name = r.new
		FROM unnest($2::text[], $3::text[]) AS r(old, new)
		WHERE b.account_id = $1 AND b.name = r.old`, accountID, names, newNames)
	if pgCode(err) == codeUniqueViolation {
		return fmt.Errorf("rename mailbox: %w", store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	return nil
}

// SetSubscribed implements store.Store.
func (s *Store) SetSubscribed(ctx context.Context, accountID int64, name string, on bool) error {
	name, err := mailboxName(name)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return s.write(ctx, func(w *wtx) error {
		tag, err := w.exec(`UPDATE mailboxes SET subscribed = $1 WHERE account_id = $2 AND name = $3`, on, accountID, name)
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("subscribe %q: %w", name, store.ErrNoSuchMailbox)
		}
		return nil
	})
}
