package deliver

// Forwarding with SRS (package srs). A message from a foreign sender that
// an alias forwards to a remote address is queued with the sender
// rewritten to an SRS0 address of the alias's domain, so the copy we
// relay passes SPF for our domain at its destination (RFC 7208 §1.2,
// appendix D). A bounce to that address comes back to us on port 25:
// Resolve checks its hash and age and forwards it, through the queue, to
// the original sender.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/srs"
	"github.com/ternmail/tern/internal/store"
)

// resolveSRS handles address when it is an SRS0 address in one of our
// domains (ok true): a valid one resolves to its original sender as a
// remote recipient, an invalid or expired one is ErrUnknownUser. It works
// on the address as given, before normalisation, since an SRS0 local
// part may exceed the 64 octets Tern allows its own users.
func (d *Deliverer) resolveSRS(ctx context.Context, address string) (rc Recipient, ok bool, err error) {
	at := strings.LastIndexByte(address, '@')
	if d.cfg.SRS == nil || at < 0 || !srs.IsSRS(address[:at]) {
		return Recipient{}, false, nil
	}
	local := address[:at]
	domain, err := accounts.NormalizeDomain(address[at+1:])
	if err != nil {
		return Recipient{}, false, nil // Resolve says why
	}
	if _, err := d.st.GetDomain(ctx, domain); errors.Is(err, store.ErrNotFound) {
		return Recipient{}, false, nil // not ours: not ours to reverse
	} else if err != nil {
		return Recipient{}, true, fmt.Errorf("resolve %s: %w", address, err)
	}
	orig, err := d.cfg.SRS.Reverse(local)
	if err != nil {
		return Recipient{}, true, fmt.Errorf("%w: %v", ErrUnknownUser, err)
	}
	orig, err = accounts.NormalizeAddress(orig)
	if err != nil {
		return Recipient{}, true, fmt.Errorf("%w: %v", ErrUnknownUser, err)
	}
	if !d.cfg.Relay {
		return Recipient{}, true, ErrRelayUnavailable
	}
	return Recipient{Address: local + "@" + domain, Remote: []string{orig}}, true, nil
}

// forwardSender returns the envelope sender to queue m's remote copies
// with: an SRS0 address when m comes from a foreign sender and has
// remote recipients (on port 25 these are forwards: aliases and SRS
// bounces; submission and the web only send as our own addresses),
// otherwise m.From. The null sender stays null (RFC 5321 §4.5.5), and
// senders in our domains pass SPF as they are.
func (d *Deliverer) forwardSender(ctx context.Context, m *Message, remote bool) (string, error) {
	if d.cfg.SRS == nil || m.From == "" || !remote {
		return m.From, nil
	}
	_, domain, err := accounts.SplitAddress(m.From)
	if err != nil {
		return m.From, nil // cannot rewrite what we cannot read
	}
	if _, err := d.st.GetDomain(ctx, domain); err == nil {
		return m.From, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("deliver: %w", err)
	}
	// The domain the message was forwarded by: that of the first
	// recipient with remote targets, where bounces must come back.
	var via string
	for _, rc := range m.Recipients {
		if len(rc.Remote) > 0 {
			_, via, _ = strings.Cut(rc.Address, "@")
			break
		}
	}
	from, err := d.cfg.SRS.Forward(m.From, via)
	if err != nil {
		// Too long to rewrite: forwarded as it is, SPF may fail.
		d.log.Warn("sender not rewritten", "from", m.From, "err", err)
		return m.From, nil
	}
	return from, nil
}
