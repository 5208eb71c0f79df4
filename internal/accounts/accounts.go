// Package accounts manages domains, users and aliases: it normalises and
// validates addresses and domain names (IDN included), hashes passwords with
// argon2id, and keeps the rules an alias table must follow (local targets
// exist, no loops). It sees only the store interface.
package accounts

import "github.com/ternmail/tern/internal/store"

// sentinel is an error that is itself a sentinel (compared with errors.Is)
// and also matches the store sentinel it refines, so a door that maps only
// store errors still answers "invalid argument".
type sentinel struct {
	msg  string
	base error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.base }

var (
	// ErrInvalidAddress is wrapped by every address or domain syntax
	// error; errors.Is(err, store.ErrInvalid) holds too.
	ErrInvalidAddress error = &sentinel{"invalid address", store.ErrInvalid}
	// ErrInvalidPassword is wrapped when a new password is refused (empty
	// or too long); errors.Is(err, store.ErrInvalid) holds too.
	ErrInvalidPassword error = &sentinel{"invalid password", store.ErrInvalid}
)
