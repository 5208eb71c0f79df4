package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ternmail/tern/internal/store"
)

// maxAliasDepth bounds how many aliases deep an alias may expand before a
// local account is reached; deeper chains are refused when created.
const maxAliasDepth = 10

// Manager changes domains, accounts and aliases with Tern's rules: names
// normalised, passwords hashed, alias targets that exist and never loop.
// The CLI and the admin web both use it. It is safe for concurrent use as
// far as the store is.
type Manager struct {
	st   store.Store
	hash func(password string) (string, error) // HashPassword; cheaper in tests
}

// NewManager returns a Manager over st.
func NewManager(st store.Store) *Manager {
	return &Manager{st: st, hash: HashPassword}
}

// AddDomain starts serving a domain.
func (m *Manager) AddDomain(ctx context.Context, name string) error {
	d, err := NormalizeDomain(name)
	if err != nil {
		return fmt.Errorf("add domain: %w", err)
	}
	if err := m.st.AddDomain(ctx, d); err != nil {
		return fmt.Errorf("add domain %s: %w", d, err)
	}
	return nil
}

// RemoveDomain stops serving a domain. It fails with store.ErrInUse while
// accounts or aliases exist in it, unless force, which removes them too.
func (m *Manager) RemoveDomain(ctx context.Context, name string, force bool) error {
	d, err := NormalizeDomain(name)
	if err != nil {
		return fmt.Errorf("remove domain: %w", err)
	}
	if err := m.st.RemoveDomain(ctx, d, force); err != nil {
		if errors.Is(err, store.ErrInUse) {
			return fmt.Errorf("remove domain %s: it still has accounts or aliases (force removes them): %w", d, err)
		}
		return fmt.Errorf("remove domain %s: %w", d, err)
	}
	return nil
}

// AddUser creates an account with its default mailboxes. The domain must
// be served here and the address must not be an alias.
func (m *Manager) AddUser(ctx context.Context, address, password string) (store.Account, error) {
	addr, err := m.newLocalAddress(ctx, address)
	if err != nil {
		return store.Account{}, fmt.Errorf("add user: %w", err)
	}
	switch _, err := m.st.GetAlias(ctx, addr); {
	case err == nil:
		return store.Account{}, fmt.Errorf("add user %s: an alias has this address: %w", addr, store.ErrExists)
	case !errors.Is(err, store.ErrNotFound):
		return store.Account{}, fmt.Errorf("add user %s: %w", addr, err)
	}
	hash, keys, err := m.credentials(password)
	if err != nil {
		return store.Account{}, fmt.Errorf("add user %s: %w", addr, err)
	}
	a, err := m.st.AddAccount(ctx, store.Account{Address: addr, PasswordHash: hash, SCRAM: keys})
	if err != nil {
		return store.Account{}, fmt.Errorf("add user %s: %w", addr, err)
	}
	return a, nil
}

// SetPassword replaces an account's password.
func (m *Manager) SetPassword(ctx context.Context, address, password string) error {
	a, err := m.account(ctx, address)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	hash, keys, err := m.credentials(password)
	if err != nil {
		return fmt.Errorf("set password for %s: %w", a.Address, err)
	}
	if err := m.st.SetPassword(ctx, a.ID, hash, keys); err != nil {
		return fmt.Errorf("set password for %s: %w", a.Address, err)
	}
	return nil
}

// credentials returns what the store keeps of a new password: its
// argon2id hash and its SCRAM-SHA-256 keys (store.Account.SCRAM).
func (m *Manager) credentials(password string) (hash, scram string, err error) {
	if hash, err = m.hash(password); err != nil {
		return "", "", err
	}
	keys, err := NewSCRAMKeys(password)
	if err != nil {
		return "", "", err
	}
	return hash, keys.String(), nil
}

// RemoveUser removes an account with its mailboxes and messages. Aliases
// that name it as a target are left as they are.
func (m *Manager) RemoveUser(ctx context.Context, address string) error {
	a, err := m.account(ctx, address)
	if err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	if err := m.st.RemoveAccount(ctx, a.ID); err != nil {
		return fmt.Errorf("remove user %s: %w", a.Address, err)
	}
	return nil
}

// AddAlias creates an alias delivering to targets, local (an existing
// account or alias) or remote. With sendAs, the local accounts among the
// targets may send as the alias address. The alias must be in a local
// domain, must not be an account's address, and must not expand back to
// itself or more than 10 aliases deep.
func (m *Manager) AddAlias(ctx context.Context, address string, targets []string, sendAs bool) error {
	addr, err := m.newLocalAddress(ctx, address)
	if err != nil {
		return fmt.Errorf("add alias: %w", err)
	}
	wrap := func(err error) error { return fmt.Errorf("add alias %s: %w", addr, err) }
	switch _, err := m.st.GetAccount(ctx, addr); {
	case err == nil:
		return wrap(fmt.Errorf("an account has this address: %w", store.ErrExists))
	case !errors.Is(err, store.ErrNotFound):
		return wrap(err)
	}
	if len(targets) == 0 {
		return wrap(fmt.Errorf("no targets: %w", store.ErrInvalid))
	}
	r := resolver{st: m.st, ctx: ctx}
	var norm []string
	seen := map[string]bool{}
	for _, t := range targets {
		n, err := NormalizeAddress(t)
		if err != nil {
			return wrap(fmt.Errorf("target: %w", err))
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		if n == addr {
			return wrap(fmt.Errorf("target is the alias itself: %w", store.ErrInvalid))
		}
		local, err := r.isLocal(n)
		if err != nil {
			return wrap(err)
		}
		if local {
			if err := r.mustExist(n); err != nil {
				return wrap(err)
			}
		}
		norm = append(norm, n)
	}
	if err := r.checkLoop(addr, norm); err != nil {
		return wrap(err)
	}
	if err := m.st.AddAlias(ctx, store.Alias{Address: addr, Targets: norm, SendAs: sendAs}); err != nil {
		return wrap(err)
	}
	return nil
}

// RemoveAlias removes an alias.
func (m *Manager) RemoveAlias(ctx context.Context, address string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("remove alias: %w", err)
	}
	if err := m.st.RemoveAlias(ctx, addr); err != nil {
		return fmt.Errorf("remove alias %s: %w", addr, err)
	}
	return nil
}

// SetCatchAll makes target receive mail for unknown local parts of domain;
// an empty target turns catch-all off. A local target must exist.
func (m *Manager) SetCatchAll(ctx context.Context, domain, target string) error {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return fmt.Errorf("set catch-all: %w", err)
	}
	wrap := func(err error) error { return fmt.Errorf("set catch-all for %s: %w", d, err) }
	if target != "" {
		if target, err = NormalizeAddress(target); err != nil {
			return wrap(err)
		}
		r := resolver{st: m.st, ctx: ctx}
		local, err := r.isLocal(target)
		if err != nil {
			return wrap(err)
		}
		if local {
			if err := r.mustExist(target); err != nil {
				return wrap(err)
			}
		}
	}
	if err := m.st.SetCatchAll(ctx, d, target); err != nil {
		return wrap(err)
	}
	return nil
}

// newLocalAddress normalises an address for a new account or alias: its
// domain must be served here, and "+" is refused in the local part because
// it separates plus-addressing tags (user+tag reaches user), so an account
// "a+b" could never be told from "a" with tag "b".
func (m *Manager) newLocalAddress(ctx context.Context, address string) (string, error) {
	local, domain, err := SplitAddress(address)
	if err != nil {
		return "", err
	}
	addr := local + "@" + domain
	if strings.Contains(local, "+") {
		return "", fmt.Errorf("%s: %w: '+' is reserved for plus-addressing tags", addr, ErrInvalidAddress)
	}
	if _, err := m.st.GetDomain(ctx, domain); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("%s: domain %s is not served here: %w", addr, domain, err)
		}
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	return addr, nil
}

// account looks up an account by an address in any spelling.
func (m *Manager) account(ctx context.Context, address string) (store.Account, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return store.Account{}, err
	}
	a, err := m.st.GetAccount(ctx, addr)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Account{}, fmt.Errorf("no account %s: %w", addr, err)
		}
		return store.Account{}, fmt.Errorf("%s: %w", addr, err)
	}
	return a, nil
}
