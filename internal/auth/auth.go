// Package auth checks credentials for every door (SMTP submission, IMAP,
// POP3, web): password verification with a short-lived cache of successful
// logins, throttling of failures per IP and per account with growing
// delays, and the SASL mechanisms the doors offer (SCRAM-SHA-256, PLAIN,
// LOGIN).
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/limits"
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
	// passes (defaults 10 and 5m). The window runs from the latest
	// failure; throttled attempts do not extend it.
	MaxFailures   int
	FailureWindow time.Duration
	// MaxVerify bounds concurrent password verifications (default
	// GOMAXPROCS). Each argon2id verification takes 64 MiB, so this also
	// bounds the memory a burst of logins can take.
	MaxVerify int
	// MaxTracked bounds the entries of the success cache and of each
	// failure table (default 10000); the oldest are evicted first.
	MaxTracked int
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CacheTTL, 5*time.Minute)
	def(&c.BaseDelay, 200*time.Millisecond)
	def(&c.MaxDelay, 5*time.Second)
	def(&c.FailureWindow, 5*time.Minute)
	if c.MaxFailures <= 0 {
		c.MaxFailures = 10
	}
	if c.MaxVerify <= 0 {
		c.MaxVerify = runtime.GOMAXPROCS(0)
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = 10000
	}
}

// Authenticator verifies logins. It is safe for concurrent use.
type Authenticator struct {
	st  store.Store
	cfg Config
	log *slog.Logger
	// Replaced by tests (export_test.go).
	now        func() time.Time
	sleep      func(context.Context, time.Duration)
	verifyHash func(hash, password string) bool

	// verify is a semaphore over password verifications.
	verify chan struct{}
	// cacheKey keys the HMAC that stands for a password in the cache, so
	// memory holds no unsalted fast hash of any password.
	cacheKey []byte
	// fakeKey keys the HMAC that makes up SCRAM salts (fakeKeys).
	fakeKey []byte

	mu       sync.Mutex
	cache    map[cacheEntry]time.Time // → expiry
	failIP   map[netip.Prefix]*failures
	failUser map[string]*failures
}

// cacheEntry identifies one successful verification.
type cacheEntry struct {
	address, hash string
	pw            [sha256.Size]byte
}

// failures counts recent failed logins of one IP network or username.
type failures struct {
	n    int
	last time.Time
}

// New returns an Authenticator over st.
func New(st store.Store, cfg Config, log *slog.Logger) *Authenticator {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{
		st:         st,
		cfg:        cfg,
		log:        log,
		now:        time.Now,
		sleep:      sleep,
		verifyHash: accounts.VerifyPassword,
		verify:     make(chan struct{}, cfg.MaxVerify),
		cacheKey:   []byte(rand.Text()),
		fakeKey:    []byte(rand.Text()),
		cache:      make(map[cacheEntry]time.Time),
		failIP:     make(map[netip.Prefix]*failures),
		failUser:   make(map[string]*failures),
	}
}

// Login checks username (an address, any case, IDN allowed) and password
// from a client at remote. Failures take the same time and text whether
// the user exists or not: ErrInvalidCredentials after a delay growing with
// recent failures, or ErrThrottled at once past Config.MaxFailures. Other
// errors are store failures or ctx's. A success gives an account without
// SCRAM-SHA-256 keys its keys (addSCRAM).
func (a *Authenticator) Login(ctx context.Context, remote netip.Addr, username, password string) (store.Account, error) {
	if err := ctx.Err(); err != nil {
		return store.Account{}, err
	}
	ipKey := limits.Key(remote)
	// An unparsable username is counted under its raw text, so it is
	// throttled like any other; cut short, so a client sending huge
	// usernames cannot fill memory (valid addresses are at most 254
	// octets).
	user, err := accounts.NormalizeAddress(username)
	valid := err == nil
	if !valid {
		user = clip(username)
	}
	log := a.log.With("ip", remote.String(), "username", clip(username))

	// Throttling comes before the cache: a throttled client must not learn
	// from a fast cached answer that a guess was right.
	if a.throttled(ipKey, user) {
		log.Info("login throttled")
		return store.Account{}, ErrThrottled
	}
	acct, hash, err := a.lookup(ctx, user, valid)
	if err != nil {
		return store.Account{}, err
	}
	exists := acct.ID != 0
	entry := cacheEntry{address: acct.Address, hash: hash, pw: a.mac(password)}
	if exists && a.cached(entry) {
		a.succeeded(ipKey)
		return a.addSCRAM(ctx, acct, password, log), nil
	}

	n, err := a.verifyOnce(ctx, ipKey, user, hash, password, exists)
	if err != nil {
		if errors.Is(err, ErrThrottled) {
			log.Info("login throttled")
		}
		return store.Account{}, err
	}
	if n == 0 {
		a.remember(entry)
		a.succeeded(ipKey)
		return a.addSCRAM(ctx, acct, password, log), nil
	}
	reason := "wrong password"
	if !exists {
		reason = "unknown user"
	}
	log.Info("login failed", "reason", reason, "failures", n)
	// A cancelled ctx ends the wait early; the answer stays the same.
	a.sleep(ctx, a.delay(n))
	return store.Account{}, ErrInvalidCredentials
}

// lookup returns the account and the hash to verify against: the
// account's, or DummyHash with a zero Account for an unknown user.
func (a *Authenticator) lookup(ctx context.Context, user string, valid bool) (store.Account, string, error) {
	if !valid {
		return store.Account{}, accounts.DummyHash(), nil
	}
	acct, err := a.st.GetAccount(ctx, user)
	switch {
	case err == nil && acct.ID != 0:
		return acct, acct.PasswordHash, nil
	case err == nil, errors.Is(err, store.ErrNotFound):
		return store.Account{}, accounts.DummyHash(), nil
	default:
		return store.Account{}, "", fmt.Errorf("login: %w", err)
	}
}

// verifyOnce verifies one password under the semaphore and returns 0 on
// success, else the failure count it recorded. Throttling is checked
// again once a slot is taken, and a failure is counted before the slot is
// given back: otherwise a burst of concurrent attempts, all queued before
// the first failure was counted, would each be verified. So at most
// MaxVerify-1 attempts go past MaxFailures.
func (a *Authenticator) verifyOnce(ctx context.Context, ipKey netip.Prefix, user, hash, password string, exists bool) (int, error) {
	select {
	case a.verify <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-a.verify }()
	if a.throttled(ipKey, user) {
		return 0, ErrThrottled
	}
	if a.verifyHash(hash, password) && exists {
		return 0, nil
	}
	return a.failed(ipKey, user), nil
}

func (a *Authenticator) mac(password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, a.cacheKey)
	m.Write([]byte(password))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// delay is min(BaseDelay·2^(n-1), MaxDelay) for the n-th failure.
func (a *Authenticator) delay(n int) time.Duration {
	d := a.cfg.BaseDelay
	for i := 1; i < n && d < a.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, a.cfg.MaxDelay)
}

// clip cuts s to at most 256 octets.
func clip(s string) string {
	const n = 256
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
