// Package relay delivers queued mail to other domains: it leases due
// queue entries from the store, looks up where each domain takes mail
// (mx), hands the message over by SMTP, and records the outcome: delivered,
// deferred with exponential backoff, or bounced with a DSN (dsn) that goes
// back to the sender through deliver.
//
// The flow of one queue entry (attempt.go): lookup → for each MX host and
// address until one takes the transaction: connect, EHLO, STARTTLS when
// offered, the form of the message the peer takes (outgoing.go: as
// stored, or converted to 7 bit), MAIL/RCPT/DATA → 2xx recipients are
// done, 5xx ones bounce, 4xx ones and connection failures wait for the
// next attempt (nextDelay) until the entry's lifetime ends, when they
// bounce too.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/mx"
	"github.com/ternmail/tern/internal/store"
)

// Port is where every peer MTA listens (RFC 5321 §4.5.4.2 via the MX
// record; there is no port in DNS).
const Port = "25"

// Config is the relay's policy. Zero values take the defaults given.
type Config struct {
	Hostname string // our name in EHLO and in DSNs
	// Node names this relay's leases in the store (default: the machine's
	// host name). It must differ between nodes sharing one store, and
	// stay the same across restarts of one node, so a restarted node takes
	// back at once what it held when it died.
	Node string
	// MaxConcurrent bounds attempts running at once (default 32).
	MaxConcurrent int
	// PerDomain bounds attempts to one destination domain at once
	// (default 4), so one slow or dead domain never holds every slot.
	PerDomain int
	// Lifetime is how long a message is retried before it bounces
	// (default 5 days; RFC 5321 §4.5.4.1 says at least 4-5 days).
	Lifetime time.Duration
	// DelayWarning is the age at which the sender is told, once, that a
	// message is still being retried (RFC 3464 "delayed" DSN). Zero
	// means never.
	DelayWarning time.Duration
	// BaseDelay scales the retry schedule (nextDelay): the first retry
	// comes after BaseDelay, later ones after 5, 15, 30, 60, 120, 240
	// times it (default 1 minute). Tests make it milliseconds.
	BaseDelay time.Duration
	// Poll is how often the queue is checked for due entries when
	// nothing woke the relay (default 1s, or BaseDelay when shorter).
	Poll time.Duration
	// ConnectTimeout bounds one TCP connect (default 30s).
	ConnectTimeout time.Duration
	// CommandTimeout bounds the wait for each reply (default 5 minutes,
	// RFC 5321 §4.5.3.2); DataTimeout bounds sending the body and the
	// final reply (default 10 minutes, §4.5.3.2.6).
	CommandTimeout, DataTimeout time.Duration
	// IdleTimeout is how long a connection that finished a transaction is
	// kept open for the next message to the same host (default 5s).
	IdleTimeout time.Duration
	// TLS is the client configuration for STARTTLS. Nil accepts any
	// certificate: opportunistic TLS protects against passive listeners
	// only, and refusing to deliver over an unverified channel would
	// only push the message to plaintext (RFC 7435). Where a domain's
	// MTA-STS policy requires it, the certificate is verified against
	// TLS.RootCAs (nil: the system's roots) whatever InsecureSkipVerify
	// says.
	TLS *tls.Config
}

func (c *Config) defaults() {
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 32
	}
	if c.PerDomain <= 0 {
		c.PerDomain = 4
	}
	if c.Lifetime <= 0 {
		c.Lifetime = 5 * 24 * time.Hour
	}
	if c.BaseDelay <= 0 {
		c.BaseDelay = time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = min(time.Second, c.BaseDelay)
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 30 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 5 * time.Minute
	}
	if c.DataTimeout <= 0 {
		c.DataTimeout = 10 * time.Minute
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Second
	}
	if c.TLS == nil {
		c.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	}
}

// Resolver finds the hosts of a domain (mx.Resolver).
type Resolver interface {
	Lookup(ctx context.Context, domain string) ([]mx.Host, error)
}

// Deliverer takes bounces in (deliver.Deliverer).
type Deliverer interface {
	Resolve(ctx context.Context, address string) (deliver.Recipient, error)
	Remote(address string) (deliver.Recipient, error)
	Deliver(ctx context.Context, m *deliver.Message) error
}

// Deps are what the relay works with.
type Deps struct {
	Store    store.Store
	Deliver  Deliverer
	Resolver Resolver
	Log      *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Dial opens connections (default a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Signer, when set, DKIM-signs each message as it is sent.
	Signer Signer
	// Policies, when set, applies peers' MTA-STS policies (sts.go).
	Policies Policies
}

// Signer returns header fields to prepend to a message (msgauth.Signer):
// DKIM signatures, or nil when it has no key for the message. It reads
// the message once, as it may be made while it is read (a conversion to
// 7 bit).
type Signer interface {
	SignReader(msg io.Reader) ([]byte, error)
}

// Relay is the outbound worker. Start it with Start, stop it with
// Shutdown.
type Relay struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	owner string
	kick  chan struct{}
	pool  *pool

	mu       sync.Mutex
	inflight map[string]int // attempts running per domain
	running  int

	// Outcome counters, for metrics (Stats).
	attempts, delivered, deferred, bounced atomic.Int64

	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// New makes a relay; it does nothing until Start.
func New(cfg Config, deps Deps) (*Relay, error) {
	if deps.Store == nil || deps.Deliver == nil || deps.Resolver == nil {
		return nil, errors.New("relay: Store, Deliver and Resolver are required")
	}
	if cfg.Hostname == "" {
		return nil, errors.New("relay: Hostname is required")
	}
	cfg.defaults()
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Dial == nil {
		d := &net.Dialer{Timeout: cfg.ConnectTimeout}
		deps.Dial = d.DialContext
	}
	owner := cfg.Node
	if owner == "" {
		owner, _ = os.Hostname()
	}
	return &Relay{
		cfg: cfg, deps: deps, log: deps.Log,
		owner:    "relay:" + owner,
		kick:     make(chan struct{}, 1),
		pool:     newPool(cfg.PerDomain, cfg.IdleTimeout),
		inflight: map[string]int{},
	}, nil
}

// Start takes back the leases a killed predecessor of this node left and
// runs the relay in the background.
func (r *Relay) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	if n, err := r.deps.Store.ReleaseLeases(ctx, r.owner); err != nil {
		r.log.Error("releasing stale leases", "err", err)
	} else if n > 0 {
		r.log.Info("took back leases of a previous run", "entries", n)
	}
	go r.loop(ctx)
}

// Kick makes the relay look at the queue now (after mail was queued, or
// "tern queue flush").
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Shutdown stops leasing and interrupts running attempts; their entries
// are deferred (or, if the interruption came too late to record, their
// leases simply expire). It waits for them until ctx ends.
func (r *Relay) Shutdown(ctx context.Context) error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	all := make(chan struct{})
	go func() { <-r.done; r.wg.Wait(); r.pool.closeAll(); close(all) }()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay: attempts still running: %w", ctx.Err())
	}
}

func (r *Relay) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		r.pool.expire()
		r.dispatch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// dispatch leases what the free slots allow and starts one attempt per
// entry; the store counts the attempts running per domain against
// PerDomain, so no domain exceeds its limit.
func (r *Relay) dispatch(ctx context.Context) {
	r.mu.Lock()
	free := r.cfg.MaxConcurrent - r.running
	busy := make(map[string]int, len(r.inflight))
	for d, n := range r.inflight {
		busy[d] = n
	}
	r.mu.Unlock()
	if free <= 0 || ctx.Err() != nil {
		return
	}
	leaseFor := r.attemptLimit() + time.Minute
	entries, err := r.deps.Store.LeaseQueue(ctx, store.LeaseRequest{
		Owner: r.owner, Now: r.deps.Now(), For: leaseFor,
		Max: free, PerDomain: r.cfg.PerDomain, Busy: busy,
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("lease queue", "err", err)
		}
		return
	}
	for _, e := range entries {
		r.mu.Lock()
		r.inflight[e.Domain]++
		r.running++
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			actx, cancel := context.WithTimeout(ctx, r.attemptLimit())
			r.attempt(actx, e)
			cancel()
			r.mu.Lock()
			if r.inflight[e.Domain]--; r.inflight[e.Domain] == 0 {
				delete(r.inflight, e.Domain)
			}
			r.running--
			r.mu.Unlock()
			r.Kick()
		}()
	}
}

// attemptLimit bounds one attempt (every host tried, the body sent once);
// the lease outlasts it, so two workers never hold one entry. A worker
// killed mid-attempt leaves its entries to be taken over when the lease
// expires.
func (r *Relay) attemptLimit() time.Duration {
	return r.cfg.DataTimeout + 4*r.cfg.CommandTimeout + 2*r.cfg.ConnectTimeout
}

// Stats are the relay's counters since it started, for metrics.
type Stats struct {
	Attempts  int64 // connections tried to a peer host
	Delivered int64 // recipients delivered
	Deferred  int64 // recipients deferred to a later attempt
	Bounced   int64 // recipients failed for good
	Running   int   // attempts running now
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	running := r.running
	r.mu.Unlock()
	return Stats{Attempts: r.attempts.Load(), Delivered: r.delivered.Load(),
		Deferred: r.deferred.Load(), Bounced: r.bounced.Load(), Running: running}
}
