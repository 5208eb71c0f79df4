package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

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

func scanMailbox(sc interface{ Scan(...any) error }, extra ...any) (store.Mailbox, error) {
	var m store.Mailbox
	var created int64
	dest := append([]any{&m.ID, &m.AccountID, &m.Name, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq,
		&m.SpecialUse, &m.Subscribed, &created}, extra...)
	err := sc.Scan(dest...)
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
		VALUES (?, ?, ?, 1, 1, ?, ?, ?) RETURNING id`,
		accountID, name, uv, specialUse, subscribed, nanotime.Encode(m.Created)).Scan(&m.ID)
	if err != nil {
		return m, fmt.Errorf("create mailbox %s: %w", name, err)
	}
	w.touch(accountID)
	return m, nil
}

// mailboxByName finds a mailbox in the writer's transaction.
func (w *wtx) mailboxByName(accountID int64, name string) (store.Mailbox, error) {
	m, err := scanMailbox(w.queryRow(`SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("mailbox %q: %w", name, store.ErrNoSuchMailbox)
	}
	return m, err
}

func (w *wtx) mailboxByID(id int64) (store.Mailbox, error) {
	m, err := scanMailbox(w.queryRow(`SELECT `+mailboxCols+` FROM mailboxes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("mailbox %d: %w", id, store.ErrNoSuchMailbox)
	}
	return m, err
}

// ListMailboxes implements store.Store.
func (s *Store) ListMailboxes(ctx context.Context, accountID int64) ([]store.Mailbox, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = ? ORDER BY id`, accountID)
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
	m, err := scanMailbox(s.rdb.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("mailbox %q: %w", name, store.ErrNoSuchMailbox)
	}
	if err != nil {
		return m, fmt.Errorf("get mailbox: %w", err)
	}
	return m, nil
}

// MailboxStatus implements store.Store. One statement, so the counts and
// the mailbox's UIDNEXT/HIGHESTMODSEQ come from the same snapshot, and one
// pass over the mailbox's messages for all four counts.
func (s *Store) MailboxStatus(ctx context.Context, mailboxID int64) (store.MailboxStatus, error) {
	var st store.MailboxStatus
	var err error
	st.Mailbox, err = scanMailbox(s.rdb.QueryRowContext(ctx, `SELECT `+mailboxCols+`, c.n, c.unseen, c.deleted, c.size
		FROM mailboxes b, (SELECT count(*) AS n, coalesce(sum(flags & ? = 0), 0) AS unseen,
			coalesce(sum(flags & ? != 0), 0) AS deleted, coalesce(sum(size), 0) AS size
			FROM messages WHERE mailbox_id = ?) c
		WHERE b.id = ?`, flagset.BitSeen, flagset.BitDeleted, mailboxID, mailboxID),
		&st.Messages, &st.Unseen, &st.Deleted, &st.Size)
	if errors.Is(err, sql.ErrNoRows) {
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
		if err := w.check(true, store.ErrNotFound, fmt.Sprintf("create mailbox: account %d", accountID),
			`SELECT 1 FROM accounts WHERE id = ?`, accountID); err != nil {
			return err
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("create mailbox %q", name),
			`SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, name); err != nil {
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
		m, err := w.mailboxByName(accountID, name)
		if err != nil {
			return fmt.Errorf("delete mailbox: %w", err)
		}
		if err := w.releaseMessages(`m.mailbox_id = ?`, m.ID); err != nil {
			return fmt.Errorf("delete mailbox: %w", err)
		}
		if _, err := w.exec(`DELETE FROM mailboxes WHERE id = ?`, m.ID); err != nil {
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
		src, err := w.mailboxByName(accountID, from)
		if err != nil {
			return fmt.Errorf("rename mailbox: %w", err)
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("rename mailbox to %q", to),
			`SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, to); err != nil {
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
	uids, err := w.allUIDs(inbox.ID)
	if err != nil {
		return err
	}
	_, _, err = w.copyMessages(inbox.ID, uids, dst.ID, true)
	return err
}

// renameTree renames the mailbox and every mailbox below it.
func (w *wtx) renameTree(accountID int64, from, to string) error {
	// Children are the names in [from+"/", from+"0"): '0' follows '/' and
	// names compare bytewise, which also holds for multi-byte UTF-8.
	rows, err := w.query(`SELECT id, name FROM mailboxes WHERE account_id = ? AND (name = ? OR (name >= ? AND name < ?))`,
		accountID, from, from+"/", from+"0")
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	type rename struct {
		id   int64
		name string
	}
	var todo []rename
	for rows.Next() {
		var r rename
		if err := rows.Scan(&r.id, &r.name); err != nil {
			rows.Close()
			return err
		}
		r.name = to + r.name[len(from):]
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range todo {
		if err := w.check(false, store.ErrExists, fmt.Sprintf("rename mailbox: %q", r.name),
			`SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, r.name); err != nil {
			return err
		}
	}
	for _, r := range todo {
		if _, err := w.exec(`UPDATE mailboxes SET name = ? WHERE id = ?`, r.name, r.id); err != nil {
			return fmt.Errorf("rename mailbox: %w", err)
		}
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
		res, err := w.exec(`UPDATE mailboxes SET subscribed = ? WHERE account_id = ? AND name = ?`, on, accountID, name)
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("subscribe %q: %w", name, store.ErrNoSuchMailbox)
		}
		return nil
	})
}
