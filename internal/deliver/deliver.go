// Package deliver is the one way mail enters Tern: SMTP (port 25 and
// submission), IMAP APPEND, web sending and bounces all call it.
//
// Resolve maps a recipient address to local accounts and remote addresses
// (accounts, aliases with one or many targets, catch-all, plus-addressing,
// case-insensitive local parts, IDN domains in their A-label form). Deliver
// spools the body once, parses it once (msginfo), then files it into every
// local mailbox and queues it for every remote recipient in one store
// transaction.
//
// The contract: nothing is visible to any reader before Deliver or Append
// returns nil; everything is durable when it does. On error nothing was
// delivered.
package deliver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/ternmail/tern/internal/store"
)

var (
	// ErrUnknownUser: the domain is ours but nobody receives at the address.
	ErrUnknownUser = errors.New("no such user")
	// ErrNotLocal: the domain is not ours.
	ErrNotLocal = errors.New("domain not served here")
	// ErrBadAddress: the address is syntactically invalid or too long.
	ErrBadAddress = errors.New("invalid address")
	// ErrRelayUnavailable: remote recipients cannot be queued (relaying
	// is disabled in the configuration).
	ErrRelayUnavailable = errors.New("relaying to remote domains is not available")
)

// Config holds delivery policy.
type Config struct {
	MaxMessageBytes int64 // the largest body accepted
	// Relay allows remote recipients to be queued for the outbound relay.
	Relay bool
}

// Deliverer is safe for concurrent use.
type Deliverer struct {
	st  store.Store
	cfg Config
	log *slog.Logger
}

// Recipient is one resolved RCPT: where its copy of a message goes.
type Recipient struct {
	Address  string  // canonical form of the address given
	Accounts []int64 // local accounts receiving into INBOX, deduplicated
	Remote   []string
}

// Message is one message to deliver.
type Message struct {
	From       string // envelope sender, "" for the null sender
	Recipients []Recipient
	DSN        store.DSN
	Notify     map[string]string // RFC 3461 NOTIFY per recipient address
	Body       io.Reader         // the whole message, with any trace headers already prepended
}

func New(st store.Store, cfg Config, log *slog.Logger) *Deliverer {
	return &Deliverer{st: st, cfg: cfg, log: log}
}

// Resolve maps address to its targets. It returns ErrNotLocal for a
// foreign domain (callers decide whether that is a relay), ErrUnknownUser
// when the domain is ours but nothing receives there, ErrBadAddress for an
// invalid address.
func (d *Deliverer) Resolve(ctx context.Context, address string) (Recipient, error) {
	panic("unimplemented")
}

// Deliver stores m for all its recipients, once, durably.
func (d *Deliverer) Deliver(ctx context.Context, m *Message) error {
	panic("unimplemented")
}

// Append files body into one mailbox of one account (IMAP APPEND, Sent,
// Drafts), with flags and an internal date (zero means now).
func (d *Deliverer) Append(ctx context.Context, accountID int64, mailbox string, flags []string, date time.Time, body io.Reader) (store.Delivered, error) {
	panic("unimplemented")
}
