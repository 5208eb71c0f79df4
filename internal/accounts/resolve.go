package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/ternmail/tern/internal/store"
)

// resolver answers questions about normalised addresses during one
// Manager operation, remembering which domains are local.
type resolver struct {
	st     store.Store
	ctx    context.Context
	locals map[string]bool
}

// isLocal reports whether the domain of the normalised address addr is
// served here.
func (r *resolver) isLocal(addr string) (bool, error) {
	_, domain := split(addr)
	if v, ok := r.locals[domain]; ok {
		return v, nil
	}
	_, err := r.st.GetDomain(r.ctx, domain)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
	default:
		return false, fmt.Errorf("look up domain %s: %w", domain, err)
	}
	if r.locals == nil {
		r.locals = map[string]bool{}
	}
	r.locals[domain] = err == nil
	return err == nil, nil
}

// lookup finds what a local address is: an account (nil alias), an alias,
// or store.ErrNotFound. Like delivery, it falls back to the address
// without its plus-addressing tag.
func (r *resolver) lookup(addr string) (*store.Alias, error) {
	local, domain := split(addr)
	cands := []string{addr}
	if s := StripTag(local); s != local {
		cands = append(cands, s+"@"+domain)
	}
	for _, c := range cands {
		if _, err := r.st.GetAccount(r.ctx, c); err == nil {
			return nil, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("look up %s: %w", c, err)
		}
		if al, err := r.st.GetAlias(r.ctx, c); err == nil {
			return &al, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("look up %s: %w", c, err)
		}
	}
	return nil, store.ErrNotFound
}

// mustExist fails unless the local address is an account or an alias.
func (r *resolver) mustExist(addr string) error {
	if _, err := r.lookup(addr); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("target %s is neither an account nor an alias: %w", addr, err)
		}
		return err
	}
	return nil
}

// checkLoop expands targets (the would-be targets of alias self) through
// local aliases, breadth first, and fails if the expansion reaches self
// or goes more than maxAliasDepth aliases deep.
func (r *resolver) checkLoop(self string, targets []string) error {
	level := targets
	visited := map[string]bool{}
	for depth := 1; len(level) > 0; depth++ {
		var next []string
		for _, t := range level {
			if t == self {
				return fmt.Errorf("alias loop: %s expands back to itself: %w", self, store.ErrInvalid)
			}
			if visited[t] {
				continue // reached by two paths; expanded once
			}
			visited[t] = true
			local, err := r.isLocal(t)
			if err != nil {
				return err
			}
			if !local {
				continue
			}
			al, err := r.lookup(t)
			if errors.Is(err, store.ErrNotFound) {
				continue // a dangling target of an older alias; not a loop
			} else if err != nil {
				return err
			}
			if al == nil {
				continue // an account: expansion ends here
			}
			if al.Address == self {
				return fmt.Errorf("alias loop: %s expands back to itself: %w", self, store.ErrInvalid)
			}
			if depth >= maxAliasDepth {
				return fmt.Errorf("aliases nest more than %d deep below %s: %w", maxAliasDepth, self, store.ErrInvalid)
			}
			next = append(next, al.Targets...)
		}
		level = next
	}
	return nil
}

// split splits a normalised address at its last "@".
func split(addr string) (local, domain string) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[:i], addr[i+1:]
		}
	}
	return addr, ""
}
