package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// Domains, accounts and aliases. Callers hand in canonical addresses
// (package accounts normalises); the store only checks their shape.

// exists reports whether the query finds a row.
func (w *wtx) exists(q string, args ...any) (bool, error) {
	var one int
	err := w.queryRow(q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// AddDomain implements store.Store.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	if name == "" || strings.ContainsAny(name, "@ ") {
		return fmt.Errorf("add domain: %w: bad name %q", store.ErrInvalid, name)
	}
	return s.write(ctx, func(w *wtx) error {
		if err := w.check(false, store.ErrExists, fmt.Sprintf("add domain %s", name), `SELECT 1 FROM domains WHERE name = ?`, name); err != nil {
			return err
		}
		_, err := w.exec(`INSERT INTO domains (name, created) VALUES (?, ?)`, name, nanotime.Encode(s.now()))
		return err
	})
}

// check fails with sentinel when whether q finds a row is not want: the
// "look, then refuse" step before most writes. Safe without a UNIQUE
// error dance because all writes are serialised by the writer.
func (w *wtx) check(want bool, sentinel error, what string, q string, args ...any) error {
	ok, err := w.exists(q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if ok != want {
		return fmt.Errorf("%s: %w", what, sentinel)
	}
	return nil
}

// GetDomain implements store.Store.
func (s *Store) GetDomain(ctx context.Context, name string) (store.Domain, error) {
	var d store.Domain
	var created int64
	err := s.rdb.QueryRowContext(ctx, `SELECT name, catch_all, created FROM domains WHERE name = ?`, name).
		Scan(&d.Name, &d.CatchAll, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("domain %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("get domain: %w", err)
	}
	d.Created = nanotime.Decode(created)
	return d, nil
}

// ListDomains implements store.Store.
func (s *Store) ListDomains(ctx context.Context) ([]store.Domain, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, catch_all, created FROM domains ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	var out []store.Domain
	for rows.Next() {
		var d store.Domain
		var created int64
		if err := rows.Scan(&d.Name, &d.CatchAll, &created); err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		d.Created = nanotime.Decode(created)
		out = append(out, d)
	}
	return out, rows.Err()
}

// RemoveDomain implements store.Store.
func (s *Store) RemoveDomain(ctx context.Context, name string, force bool) error {
	return s.write(ctx, func(w *wtx) error {
		if err := w.check(true, store.ErrNotFound, fmt.Sprintf("remove domain %s", name), `SELECT 1 FROM domains WHERE name = ?`, name); err != nil {
			return err
		}
		inUse, err := w.exists(`SELECT 1 FROM accounts WHERE domain = ? UNION ALL SELECT 1 FROM aliases WHERE domain = ?`, name, name)
		if err != nil {
			return err
		}
		if inUse && !force {
			return fmt.Errorf("remove domain %s: has accounts or aliases: %w", name, store.ErrInUse)
		}
		rows, err := w.query(`SELECT id FROM accounts WHERE domain = ?`, name)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			if err := w.removeAccount(id); err != nil {
				return err
			}
		}
		if _, err := w.exec(`DELETE FROM aliases WHERE domain = ?`, name); err != nil {
			return err
		}
		_, err = w.exec(`DELETE FROM domains WHERE name = ?`, name)
		return err
	})
}

// SetCatchAll implements store.Store; target "" clears it.
func (s *Store) SetCatchAll(ctx context.Context, domain, target string) error {
	return s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE domains SET catch_all = ? WHERE name = ?`, target, domain)
		return affectedOne(res, err, "set catch-all", domain)
	})
}

// affectedOne turns "no row changed" into ErrNotFound.
func affectedOne(res sql.Result, err error, op, what string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		return fmt.Errorf("%s %s: %w", op, what, store.ErrNotFound)
	}
	return nil
}

// nextUIDValidity hands out a UIDVALIDITY never given before in this
// database: at least the current time in seconds (RFC 3501 §2.3.1.1
// suggests it), and always above the last one, so a mailbox deleted and
// created again under the same name gets a new value.
func (w *wtx) nextUIDValidity() (uint32, error) {
	var last int64
	err := w.queryRow(`SELECT value FROM meta WHERE key = 'uidvalidity'`).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	v := max(last+1, w.s.now().Unix())
	if v > math.MaxUint32 {
		return 0, fmt.Errorf("UIDVALIDITY space exhausted")
	}
	_, err = w.exec(`INSERT INTO meta (key, value) VALUES ('uidvalidity', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, v)
	return uint32(v), err
}

// AddAccount implements store.Store. The domain must exist (ErrNotFound).
func (s *Store) AddAccount(ctx context.Context, a store.Account) (store.Account, error) {
	domain, err := store.AddressDomain(a.Address)
	if err != nil {
		return a, fmt.Errorf("add account: %w", err)
	}
	if a.QuotaBytes < 0 {
		return a, fmt.Errorf("add account: %w: negative quota", store.ErrInvalid)
	}
	a.Created = s.now().UTC()
	a.UsedBytes = 0
	err = s.write(ctx, func(w *wtx) error {
		if err := w.check(true, store.ErrNotFound, fmt.Sprintf("add account %s: domain %s", a.Address, domain), `SELECT 1 FROM domains WHERE name = ?`, domain); err != nil {
			return err
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("add account %s", a.Address), `SELECT 1 FROM accounts WHERE address = ? UNION ALL SELECT 1 FROM aliases WHERE address = ?`, a.Address, a.Address); err != nil {
			return err
		}
		err := w.queryRow(`INSERT INTO accounts (address, domain, password_hash, scram, quota_bytes, admin, created)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			a.Address, domain, a.PasswordHash, a.SCRAM, a.QuotaBytes, a.Admin, nanotime.Encode(a.Created)).Scan(&a.ID)
		if err != nil {
			return fmt.Errorf("add account: %w", err)
		}
		for _, mb := range store.DefaultMailboxes {
			if _, err := w.createMailbox(a.ID, mb.Name, mb.SpecialUse, true); err != nil {
				return fmt.Errorf("add account: %w", err)
			}
		}
		return nil
	})
	return a, err
}

const accountCols = `id, address, password_hash, scram, quota_bytes, used_bytes, admin, created`

func scanAccount(sc interface{ Scan(...any) error }) (store.Account, error) {
	var a store.Account
	var created int64
	err := sc.Scan(&a.ID, &a.Address, &a.PasswordHash, &a.SCRAM, &a.QuotaBytes, &a.UsedBytes, &a.Admin, &created)
	a.Created = nanotime.Decode(created)
	return a, err
}

// GetAccount implements store.Store.
func (s *Store) GetAccount(ctx context.Context, address string) (store.Account, error) {
	a, err := scanAccount(s.rdb.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE address = ?`, address))
	return a, notFound(err, "account", address)
}

// GetAccountByID implements store.Store.
func (s *Store) GetAccountByID(ctx context.Context, id int64) (store.Account, error) {
	a, err := scanAccount(s.rdb.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id))
	return a, notFound(err, "account", fmt.Sprint(id))
}

func notFound(err error, kind, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s %s: %w", kind, what, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", kind, err)
	}
	return nil
}

// ListAccounts implements store.Store.
func (s *Store) ListAccounts(ctx context.Context, domain string) ([]store.Account, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+accountCols+` FROM accounts
		WHERE ? = '' OR domain = ? ORDER BY address`, domain, domain)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("list accounts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetPassword implements store.Store.
func (s *Store) SetPassword(ctx context.Context, accountID int64, hash, scram string) error {
	return s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE accounts SET password_hash = ?, scram = ? WHERE id = ?`, hash, scram, accountID)
		return affectedOne(res, err, "set password of account", fmt.Sprint(accountID))
	})
}

// SetSCRAM implements store.Store.
func (s *Store) SetSCRAM(ctx context.Context, accountID int64, hash, scram string) error {
	return s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE accounts SET scram = ? WHERE id = ? AND password_hash = ?`, scram, accountID, hash)
		return affectedOne(res, err, "set SCRAM keys", fmt.Sprintf("of account %d with that password hash", accountID))
	})
}

// SetQuota implements store.Store.
func (s *Store) SetQuota(ctx context.Context, accountID int64, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("set quota: %w: negative quota", store.ErrInvalid)
	}
	return s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE accounts SET quota_bytes = ? WHERE id = ?`, bytes, accountID)
		return affectedOne(res, err, "set quota of account", fmt.Sprint(accountID))
	})
}

// RemoveAccount implements store.Store.
func (s *Store) RemoveAccount(ctx context.Context, accountID int64) error {
	return s.write(ctx, func(w *wtx) error { return w.removeAccount(accountID) })
}

// removeAccount releases the account's blobs, then deletes it; its
// mailboxes, messages and tombstones go by ON DELETE CASCADE.
func (w *wtx) removeAccount(id int64) error {
	if err := w.check(true, store.ErrNotFound, fmt.Sprintf("remove account %d", id), `SELECT 1 FROM accounts WHERE id = ?`, id); err != nil {
		return err
	}
	if err := w.releaseMessages(`m.mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)`, id); err != nil {
		return fmt.Errorf("remove account: %w", err)
	}
	if _, err := w.exec(`DELETE FROM accounts WHERE id = ?`, id); err != nil {
		return fmt.Errorf("remove account: %w", err)
	}
	w.touch(id)
	return nil
}

// AddAlias implements store.Store. The domain must exist (ErrNotFound).
func (s *Store) AddAlias(ctx context.Context, a store.Alias) error {
	domain, err := store.AddressDomain(a.Address)
	if err != nil {
		return fmt.Errorf("add alias: %w", err)
	}
	if len(a.Targets) == 0 {
		return fmt.Errorf("add alias %s: %w: no targets", a.Address, store.ErrInvalid)
	}
	targets, err := json.Marshal(a.Targets)
	if err != nil {
		return fmt.Errorf("add alias: %w", err)
	}
	return s.write(ctx, func(w *wtx) error {
		if err := w.check(true, store.ErrNotFound, fmt.Sprintf("add alias %s: domain %s", a.Address, domain), `SELECT 1 FROM domains WHERE name = ?`, domain); err != nil {
			return err
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("add alias %s", a.Address), `SELECT 1 FROM accounts WHERE address = ? UNION ALL SELECT 1 FROM aliases WHERE address = ?`, a.Address, a.Address); err != nil {
			return err
		}
		_, err := w.exec(`INSERT INTO aliases (address, domain, targets, send_as, created) VALUES (?, ?, ?, ?, ?)`,
			a.Address, domain, string(targets), a.SendAs, nanotime.Encode(s.now()))
		return err
	})
}

func scanAlias(sc interface{ Scan(...any) error }) (store.Alias, error) {
	var a store.Alias
	var targets string
	var created int64
	if err := sc.Scan(&a.Address, &targets, &a.SendAs, &created); err != nil {
		return a, err
	}
	a.Created = nanotime.Decode(created)
	if err := json.Unmarshal([]byte(targets), &a.Targets); err != nil {
		return a, fmt.Errorf("alias %s: bad targets: %w", a.Address, err)
	}
	return a, nil
}

// GetAlias implements store.Store.
func (s *Store) GetAlias(ctx context.Context, address string) (store.Alias, error) {
	a, err := scanAlias(s.rdb.QueryRowContext(ctx, `SELECT address, targets, send_as, created FROM aliases WHERE address = ?`, address))
	return a, notFound(err, "alias", address)
}

// ListAliases implements store.Store.
func (s *Store) ListAliases(ctx context.Context, domain string) ([]store.Alias, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT address, targets, send_as, created FROM aliases
		WHERE ? = '' OR domain = ? ORDER BY address`, domain, domain)
	if err != nil {
		return nil, fmt.Errorf("list aliases: %w", err)
	}
	defer rows.Close()
	var out []store.Alias
	for rows.Next() {
		a, err := scanAlias(rows)
		if err != nil {
			return nil, fmt.Errorf("list aliases: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// RemoveAlias implements store.Store.
func (s *Store) RemoveAlias(ctx context.Context, address string) error {
	return s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`DELETE FROM aliases WHERE address = ?`, address)
		return affectedOne(res, err, "remove alias", address)
	})
}

// SetAdmin implements store.Store.
func (s *Store) SetAdmin(ctx context.Context, accountID int64, admin bool) error {
	return s.write(ctx, func(w *wtx) error {
		res, err := w.exec(`UPDATE accounts SET admin = ? WHERE id = ?`, admin, accountID)
		return affectedOne(res, err, "set admin of account", fmt.Sprint(accountID))
	})
}
