package accounts

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ternmail/tern/internal/store"
)

// CanSendAs reports whether acct may use address as the envelope or From
// sender of a submitted message: its own address (with or without a
// plus-addressing tag), or an alias with SendAs that lists the account
// among its direct targets. The null sender "" is refused: submission
// never sends bounces. A malformed address gives an error wrapping
// ErrInvalidAddress; other errors are store failures.
func CanSendAs(ctx context.Context, st store.Store, acct store.Account, address string) (bool, error) {
	if address == "" {
		return false, nil
	}
	local, domain, err := SplitAddress(address)
	if err != nil {
		return false, fmt.Errorf("send as: %w", err)
	}
	addr := local + "@" + domain
	untagged := StripTag(local) + "@" + domain
	if addr == acct.Address || untagged == acct.Address {
		return true, nil
	}
	cands := []string{addr}
	if untagged != addr {
		cands = append(cands, untagged)
	}
	for _, c := range cands {
		al, err := st.GetAlias(ctx, c)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("send as %s: %w", addr, err)
		}
		// The first alias found decides: a tagged alias of its own is not
		// overridden by the untagged one.
		return al.SendAs && slices.Contains(al.Targets, acct.Address), nil
	}
	return false, nil
}
