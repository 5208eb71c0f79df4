package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// Domains, accounts and aliases. Callers hand in canonical addresses
// (package accounts normalises); the store only checks their shape.

// AddDomain implements store.Store.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	if name == "" || strings.ContainsAny(name, "@ \x00") {
		return fmt.Errorf("add domain: %w: bad name %q", store.ErrInvalid, name)
	}
	return s.write(ctx, func(w *wtx) error {
		tag, err := w.exec(`INSERT INTO domains (name, created) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, nanotime.Encode(s.now()))
		if err != nil {
			return fmt.Errorf("add domain %s: %w", name, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("add domain %s: %w", name, store.ErrExists)
		}
		return nil
	})
}

// GetDomain implements store.Store.
func (s *Store) GetDomain(ctx context.Context, name string) (store.Domain, error) {
	var d store.Domain
	var created int64
	err := s.pool.QueryRow(ctx, `SELECT name, catch_all, created FROM domains WHERE name = $1`, name).
		Scan(&d.Name, &d.CatchAll, &created)
	if errors.Is(err, pgx.ErrNoRows) {
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
	rows, err := s.pool.Query(ctx, `SELECT name, catch_all, created FROM domains ORDER BY name`)
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

// RemoveDomain implements store.Store. The domain's row is locked first:
// an account or alias being added to it concurrently waits (its foreign
// key check) and then fails, instead of being left without a domain.
func (s *Store) RemoveDomain(ctx context.Context, name string, force bool) error {
	return s.write(ctx, func(w *wtx) error {
		if err := w.check(true, store.ErrNotFound, fmt.Sprintf("remove domain %s", name),
			`SELECT 1 FROM domains WHERE name = $1 FOR UPDATE`, name); err != nil {
			return err
		}
		inUse, err := w.exists(`SELECT 1 FROM accounts WHERE domain = $1 UNION ALL SELECT 1 FROM aliases WHERE domain = $1 LIMIT 1`, name)
		if err != nil {
			return err
		}
		if inUse && !force {
			return fmt.Errorf("remove domain %s: has accounts or aliases: %w", name, store.ErrInUse)
		}
		ids, err := collect[int64](w.query(`SELECT id FROM accounts WHERE domain = $1 ORDER BY id`, name))
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := w.removeAccount(id); err != nil {
				return err
			}
		}
		if _, err := w.exec(`DELETE FROM aliases WHERE domain = $1`, name); err != nil {
			return err
		}
		_, err = w.exec(`DELETE FROM domains WHERE name = $1`, name)
		return err
	})
}

// SetCatchAll implements store.Store; target "" clears it.
func (s *Store) SetCatchAll(ctx context.Context, domain, target string) error {
	return s.write(ctx, func(w *wtx) error {
		tag, err := w.exec(`UPDATE domains SET catch_all = $1 WHERE name = $2`, target, domain)
		return affectedOne(tag, err, "set catch-all", domain)
	})
}

// nextUIDValidity hands out a UIDVALIDITY never given before in this
// database: at least the current time in seconds (RFC 3501 §2.3.1.1
// suggests it), and always above the last one, so a mailbox deleted and
// created again under the same name gets a new value. The meta row's lock
// serialises the nodes.
func (w *wtx) nextUIDValidity() (uint32, error) {
	var v int64
	err := w.queryRow(`UPDATE meta SET value = greatest(value + 1, $1) WHERE key = 'uidvalidity' RETURNING value`,
		w.s.now().Unix()).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("next uidvalidity: %w", err)
	}
	if v > math.MaxUint32 {
		return 0, fmt.Errorf("UIDVALIDITY space exhausted")
	}
	return uint32(v), nil
}

// lockAddress serialises the transactions that claim an address, so an
// account and an alias of the same name cannot both be added: each table
// has its own uniqueness, the pair only this lock.
func (w *wtx) lockAddress(addr string) error {
	_, err := w.exec(`SELECT pg_advisory_xact_lock(hashtextextended('tern address ' || $1, 0))`, addr)
	return err
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
		if err := w.lockAddress(a.Address); err != nil {
			return err
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("add account %s", a.Address),
			`SELECT 1 FROM accounts WHERE address = $1 UNION ALL SELECT 1 FROM aliases WHERE address = $1`, a.Address); err != nil {
			return err
		}
		err := w.queryRow(`INSERT INTO accounts (address, domain, password_hash, scram, quota_bytes, admin, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			a.Address, domain, a.PasswordHash, a.SCRAM, a.QuotaBytes, a.Admin, nanotime.Encode(a.Created)).Scan(&a.ID)
		switch pgCode(err) {
		case "":
		case codeForeignKeyViolation:
			return fmt.Errorf("add account %s: domain %s: %w", a.Address, domain, store.ErrNotFound)
		case codeUniqueViolation:
			return fmt.Errorf("add account %s: %w", a.Address, store.ErrExists)
		}
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

func scanAccount(sc pgx.Row) (store.Account, error) {
	var a store.Account
	var created int64
	err := sc.Scan(&a.ID, &a.Address, &a.PasswordHash, &a.SCRAM, &a.QuotaBytes, &a.UsedBytes, &a.Admin, &created)
	a.Created = nanotime.Decode(created)
	return a, err
}

// GetAccount implements store.Store.
func (s *Store) GetAccount(ctx context.Context, address string) (store.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE address = $1`, address))
	return a, notFound(err, "account", address)
}

// GetAccountByID implements store.Store.
func (s *Store) GetAccountByID(ctx context.Context, id int64) (store.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = $1`, id))
	return a, notFound(err, "account", fmt.Sprint(id))
}

func notFound(err error, kind, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s %s: %w", kind, what, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", kind, err)
	}
	return nil
}

// ListAccounts implements store.Store.
func (s *Store) ListAccounts(ctx context.Context, domain string) ([]store.Account, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+accountCols+` FROM accounts
		WHERE $1 = '' OR domain = $1 ORDER BY address`, domain)
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
		tag, err := w.exec(`UPDATE accounts SET password_hash = $1, scram = $2 WHERE id = $3`, hash, scram, accountID)
		return affectedOne(tag, err, "set password of account", fmt.Sprint(accountID))
	})
}

// SetSCRAM implements store.Store.
func (s *Store) SetSCRAM(ctx context.Context, accountID int64, hash, scram string) error {
	return s.write(ctx, func(w *wtx) error {
		tag, err := w.exec(`UPDATE accounts SET scram = $1 WHERE id = $2 AND password_hash = $3`, scram, accountID, hash)
		return affectedOne(tag, err, "set SCRAM keys", fmt.Sprintf("of account %d with that password hash", accountID))
	})
}

// SetQuota implements store.Store.
func (s *Store) SetQuota(ctx context.Context, accountID int64, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("set quota: %w: negative quota", store.ErrInvalid)
	}
	return s.write(ctx, func(w *wtx) error {
		tag, err := w.exec(`UPDATE accounts SET quota_bytes = $1 WHERE id = $2`, bytes, accountID)
		return affectedOne(tag, err, "set quota of account", fmt.Sprint(accountID))
	})
}

// SetAdmin implements store.Store.
func (s *Store) SetAdmin(ctx context.Context, accountID int64, admin bool) error {
	return s.write(ctx, func(w *wtx) error {
		tag, err := w.exec(`UPDATE accounts SET admin = $1 WHERE id = $2`, admin, accountID)
		return affectedOne(tag, err, "set admin of account", fmt.Sprint(accountID))
	})
}

// RemoveAccount implements store.Store.
func (s *Store) RemoveAccount(ctx context.Context, accountID int64) error {
	return s.write(ctx, func(w *wtx) error { return w.removeAccount(accountID) })
}

// removeAccount releases the account's blobs, then deletes it; its
// mailboxes, messages and tombstones go by ON DELETE CASCADE.
func (w *wtx) removeAccount(id int64) error {
	if err := w.lockAccounts(id); err != nil {
		return fmt.Errorf("remove account %d: %w", id, err)
	}
	if err := w.releaseMessages(`m.mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = $1)`, id); err != nil {
		return fmt.Errorf("remove account: %w", err)
	}
	if _, err := w.exec(`DELETE FROM accounts WHERE id = $1`, id); err != nil {
		return fmt.Errorf("remove account: %w", err)
	}
	w.touch(id)
	return nil
}

// lockAccounts locks the accounts' rows in id order, the first step of
// the lock order (see the package comment); ErrNotFound if one is
// missing.
func (w *wtx) lockAccounts(ids ...int64) error {
	got, err := collect[int64](w.query(`SELECT id FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, ids))
	if err != nil {
		return err
	}
	for _, id := range ids {
		found := false
		for _, g := range got {
			found = found || g == id
		}
		if !found {
			return fmt.Errorf("account %d: %w", id, store.ErrNotFound)
		}
	}
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
		if err := w.lockAddress(a.Address); err != nil {
			return err
		}
		if err := w.check(false, store.ErrExists, fmt.Sprintf("add alias %s", a.Address),
			`SELECT 1 FROM accounts WHERE address = $1 UNION ALL SELECT 1 FROM aliases WHERE address = $1`, a.Address); err != nil {
			return err
		}
		_, err := w.exec(`INSERT INTO aliases (address, domain, targets, send_as, created) VALUES ($1, $2, $3, $4, $5)`,
			a.Address, domain, string(targets), a.SendAs, nanotime.Encode(s.now()))
		switch pgCode(err) {
		case codeForeignKeyViolation:
			return fmt.Errorf("add alias %s: domain %s: %w", a.Address, domain, store.ErrNotFound)
		case codeUniqueViolation:
			return fmt.Errorf("add alias %s: %w", a.Address, store.ErrExists)
		}
		return err
	})
}

func scanAlias(sc pgx.Row) (store.Alias, error) {
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
	a, err := scanAlias(s.pool.QueryRow(ctx, `SELECT address, targets, send_as, created FROM aliases WHERE address = $1`, address))
	return a, notFound(err, "alias", address)
}

// ListAliases implements store.Store.
func (s *Store) ListAliases(ctx context.Context, domain string) ([]store.Alias, error) {
	rows, err := s.pool.Query(ctx, `SELECT address, targets, send_as, created FROM aliases
		WHERE $1 = '' OR domain = $1 ORDER BY address`, domain)
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
		tag, err := w.exec(`DELETE FROM aliases WHERE address = $1`, address)
		return affectedOne(tag, err, "remove alias", address)
	})
}
