// Package auth checks credentials for every door (SMTP submission, IMAP,
// POP3, web): password verification with a short-lived cache of successful
// logins, throttling of failures per IP and per account with growing
// delays, and the SASL mechanisms the doors offer (PLAIN, LOGIN).
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// ErrInvalidCredentials is the one answer for an unknown user and for a
// wrong password, so a client cannot tell them apart.
var ErrInvalidCredentials = errors.New("invalid credentials")

// ErrThrottled means too many recent failures from this IP or for this
// account; the door answers with a temporary error.
var ErrThrottled = errors.New("too many failed logins, try again later")

// Config sets the throttling and caching policy. Zero values take the
// defaults documented on each field.
type Config struct {
	// CacheTTL is how long a successful verification is remembered
	// (default 5m). The cache key includes the stored hash, so a changed
	// password is never accepted from the cache.
	CacheTTL time.Duration
	// BaseDelay is the delay after the first failure, doubled after each
	// further one up to MaxDelay (defaults 200ms and 5s).
	BaseDelay, MaxDelay time.Duration
	// MaxFailures within FailureWindow from one IP or for one account
	// makes further attempts fail with ErrThrottled until the window
	// passes (defaults 10 and 5m).
	MaxFailures   int
	FailureWindow time.Duration
}

// Authenticator verifies logins. It is safe for concurrent use.
type Authenticator struct {
	st  store.Store
	cfg Config
	log *slog.Logger
}

// New returns an Authenticator over st.
func New(st store.Store, cfg Config, log *slog.Logger) *Authenticator {
	panic("unimplemented")
}

// Login checks username (an address, any case, IDN allowed) and password
// from a client at remote. Failures take the same time and text whether
// the user exists or not.
func (a *Authenticator) Login(ctx context.Context, remote netip.Addr, username, password string) (store.Account, error) {
	panic("unimplemented")
}
