package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/limits"
	"github.com/ternmail/tern/internal/store"
)

// This file is the Authenticator's side of SCRAM-SHA-256 logins, and
// how accounts get their SCRAM keys at a password login.

// SCRAM returns the account side of one SCRAM-SHA-256 exchange with a
// client at remote, to give NewSASLServer. It keeps Login's rules: the
// same throttling and growing delays, counted in the same tables, and no
// way to tell an unknown user from a wrong password. done receives the
// outcome as Login returns it: the account once the client has taken
// the server's final message, or ErrThrottled, ErrInvalidCredentials or
// a store error; its error ends the exchange. A door passes the function
// it handles Login's result with, so both log in the same way.
func (a *Authenticator) SCRAM(ctx context.Context, remote netip.Addr, done func(store.Account, error) error) SCRAMLogin {
	return &scramLogin{a: a, ctx: ctx, remote: remote, done: done}
}

// scramLogin implements SCRAMLogin.
type scramLogin struct {
	a      *Authenticator
	ctx    context.Context
	remote netip.Addr
	done   func(store.Account, error) error

	log    *slog.Logger // set by Keys
	ipKey  netip.Prefix
	user   string        // as Login counts failures under it
	acct   store.Account // zero unless the account exists and has keys
	reason string        // why the exchange cannot succeed, for the log
	ok     bool          // Verify accepted the proof
}

// Keys implements SCRAMLogin. For an unknown user, or an account
// without keys, it makes keys up (fakeKeys): the exchange then looks
// like any other until Verify refuses the proof.
func (l *scramLogin) Keys(username string) (accounts.SCRAMKeys, error) {
	if err := l.ctx.Err(); err != nil {
		return accounts.SCRAMKeys{}, l.fail(err)
	}
	a := l.a
	l.ipKey = limits.Key(l.remote)
	user, err := accounts.NormalizeAddress(username)
	valid := err == nil
	if !valid {
		user = clip(username)
	}
	l.user = user
	l.log = a.log.With("ip", l.remote.String(), "username", clip(username), "mechanism", SCRAMSHA256)
	if a.throttled(l.ipKey, user) {
		l.log.Info("login throttled")
		return accounts.SCRAMKeys{}, l.fail(ErrThrottled)
	}
	acct, _, err := a.lookup(l.ctx, user, valid)
	if err != nil {
		return accounts.SCRAMKeys{}, l.fail(err)
	}
	if acct.ID == 0 {
		l.reason = "unknown user"
		return a.fakeKeys(user), nil
	}
	keys, err := accounts.ParseSCRAMKeys(acct.SCRAM)
	if err != nil {
		// Set before SCRAM existed: the next password login adds them.
		l.reason = "no SCRAM keys yet"
		return a.fakeKeys(user), nil
	}
	l.acct = acct
	return keys, nil
}

// Verify implements SCRAMLogin.
func (l *scramLogin) Verify(proofOK bool) error {
	if l.log == nil {
		return ErrInvalidCredentials // Keys was not called
	}
	if err := l.ctx.Err(); err != nil {
		return l.fail(err)
	}
	n, throttled := l.a.settle(l.ipKey, l.user, proofOK && l.acct.ID != 0)
	switch {
	case throttled:
		l.log.Info("login throttled")
		return l.fail(ErrThrottled)
	case n == 0:
		l.ok = true
		return nil
	}
	if l.reason == "" {
		l.reason = "wrong password"
	}
	l.log.Info("login failed", "reason", l.reason, "failures", n)
	// A cancelled ctx ends the wait early; the answer stays the same.
	l.a.sleep(l.ctx, l.a.delay(n))
	return l.fail(ErrInvalidCredentials)
}

// Done implements SCRAMLogin.
func (l *scramLogin) Done() error {
	if !l.ok {
		return l.fail(ErrInvalidCredentials)
	}
	return l.done(l.acct, nil)
}

// fail hands err to done and returns done's error, or err if done has
// none: the exchange ends either way.
func (l *scramLogin) fail(err error) error {
	if e := l.done(store.Account{}, err); e != nil {
		return e
	}
	return err
}

// fakeKeys are the keys of a user who has none: a salt that is the same
// at every attempt, as a real account's is, from an HMAC of the user
// under a per-process secret, and the iteration count of new keys. No
// proof can match them (Verify refuses anyway). The salt changes when
// the process restarts, and when the account gets real keys, which
// a client watching closely could notice; so do real salts when a
// password changes.
func (a *Authenticator) fakeKeys(user string) accounts.SCRAMKeys {
	m := hmac.New(sha256.New, a.fakeKey)
	m.Write([]byte(user))
	sum := m.Sum(nil)
	return accounts.SCRAMKeys{
		Salt:       sum[:accounts.SCRAMSaltLen],
		Iterations: accounts.SCRAMIterations,
		StoredKey:  sum,
		ServerKey:  sum,
	}
}

// addSCRAM gives an account whose password was set before Tern had SCRAM
// (or with fewer iterations than SCRAMIterations) keys derived from the
// password Login just verified, so its next login can use SCRAM-SHA-256.
// It is done before Login answers, so that the client's next login finds
// them: it costs one PBKDF2 of SCRAMIterations (0.7 ms here, next to
// argon2id's 160) and one store write, once per account. The write only
// happens if the password hash is still the one verified, so keys for a
// password changed meanwhile are never stored. A failure is only logged:
// the login itself succeeded.
func (a *Authenticator) addSCRAM(ctx context.Context, acct store.Account, password string, log *slog.Logger) store.Account {
	if k, err := accounts.ParseSCRAMKeys(acct.SCRAM); err == nil && k.Iterations >= accounts.SCRAMIterations {
		return acct
	}
	keys, err := accounts.NewSCRAMKeys(password)
	if err == nil {
		err = a.st.SetSCRAM(ctx, acct.ID, acct.PasswordHash, keys.String())
	}
	switch {
	case err == nil:
		acct.SCRAM = keys.String()
		log.Info("SCRAM keys added")
	case errors.Is(err, store.ErrNotFound):
		log.Debug("SCRAM keys not added: the password changed meanwhile")
	default:
		log.Warn("adding SCRAM keys", "err", err)
	}
	return acct
}
