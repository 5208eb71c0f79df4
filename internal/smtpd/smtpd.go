// Package smtpd is Tern's SMTP door: the MX (port 25), where peer MTAs
// hand over mail for local recipients, and submission (587 with STARTTLS,
// 465 with implicit TLS), where authenticated users send mail. It
// translates go-smtp sessions into deliver.Resolve and deliver.Deliver
// calls; no go-smtp type leaves this package.
//
// The flow of one message: the listener wrapper (conn.go) counts the
// connection against the per-IP limit, refuses HTTP and early talkers and
// keeps the data timeout; the session (session.go) checks the envelope
// (address.go) and resolves every RCPT at once, so unknown users and relay
// attempts are refused before any data; Data (data.go) checks the header
// block (loops, bare CR/LF, submission From:), prepends the trace header
// fields (received.go), on the MX has the message authenticated (SPF,
// DKIM, DMARC through Deps.Checker, the body held meanwhile in spool.go;
// refused, filed into Junk, or given an Authentication-Results field),
// and streams the body into deliver.Deliver. 250 is
// sent only after Deliver returned nil, i.e. after the message is durable.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/limits"
	"github.com/ternmail/tern/internal/msgauth"
	"github.com/ternmail/tern/internal/store"
)

// Mode selects what a Server is for.
type Mode int

const (
	// MX receives mail from other MTAs for local recipients only (port 25).
	MX Mode = iota
	// Submission receives mail from authenticated users for any
	// recipient (587 with STARTTLS, 465 with implicit TLS; RFC 6409, RFC 8314).
	Submission
)

func (m Mode) String() string {
	if m == Submission {
		return "submission"
	}
	return "mx"
}

// Config is the policy of one Server. Zero values take the defaults given
// on each field.
type Config struct {
	Mode     Mode
	Hostname string // our name in the banner, EHLO reply, Received and Message-ID
	// TLS enables STARTTLS (RFC 3207) and is required by ServeTLS.
	// Submission without TLS needs AllowPlaintextAuth.
	TLS *tls.Config
	// AllowPlaintextAuth offers AUTH without TLS: loopback benchmarks only.
	AllowPlaintextAuth bool

	// MaxMessageBytes is the largest message accepted, announced with
	// SIZE (RFC 1870) and enforced while reading DATA and BDAT
	// (default 50 MiB).
	MaxMessageBytes int64
	// MaxRecipients per transaction (default 1000); beyond it RCPT gets
	// 452 4.5.3 and those accepted are kept (RFC 5321 §4.5.3.1.10).
	MaxRecipients int
	// MaxReceivedHeaders above which a message is refused as a loop with
	// 554 5.4.6 (RFC 5321 §6.3; default 100).
	MaxReceivedHeaders int
	// MaxConns and MaxConnsPerIP bound open connections (defaults 1000
	// and 20; an IPv6 client counts by its /64). Negative means no limit.
	MaxConns, MaxConnsPerIP int
	// MaxLineLength bounds every input line, commands and text alike,
	// counting CRLF (default 2000: twice RFC 5321 §4.5.3.1.6's 1000,
	// since real mail exceeds 998 characters; go-smtp has one limit for
	// commands and text, and commands may be longer than §4.5.3.1.4's 512
	// with ESMTP parameters anyway). An over-long line closes the
	// connection.
	MaxLineLength int
	// MaxErrors is how many refused commands a client may cause before
	// it gets 421 and is disconnected (default 10).
	MaxErrors int

	// CommandTimeout is how long the server waits for a command (RFC 5321
	// §4.5.3.2.7: at least 5 minutes; default 5m).
	CommandTimeout time.Duration
	// DataTimeout is how long the server waits for each block of message
	// data (RFC 5321 §4.5.3.2.5, the client's 3 minutes; default 3m). It
	// restarts with every block received, so a large message over a slow
	// link is not cut off.
	DataTimeout time.Duration
	// WriteTimeout bounds writing one reply (default 1m; RFC 5321 gives
	// no server value, a reply is a few hundred bytes).
	WriteTimeout time.Duration
	// TrustedNetworks are clients whose mail the MX does not
	// authenticate (Deps.Checker): this host's own programs, typically.
	TrustedNetworks []netip.Prefix
	// GreetDelay, when positive, holds the banner that long on plain
	// connections and refuses clients that talk before it (RFC 5321
	// §4.3.1: the client waits for the greeting). Zero sends the banner
	// at once and processes anything sent early as ordinary pipelined
	// commands.
	GreetDelay time.Duration
}

// Defaults.
const (
	defaultMaxMessageBytes    = 50 << 20
	defaultMaxRecipients      = 1000
	defaultMaxReceivedHeaders = 100
	defaultMaxConns           = 1000
	defaultMaxConnsPerIP      = 20
	defaultMaxLineLength      = 2000
	defaultMaxErrors          = 10
	defaultCommandTimeout     = 5 * time.Minute
	defaultDataTimeout        = 3 * time.Minute
	defaultWriteTimeout       = time.Minute
	// maxHeaderBytes bounds the header block read into memory to check
	// it; past it the rest is treated as body.
	maxHeaderBytes = 1 << 20
)

func (c *Config) setDefaults() {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = defaultMaxRecipients
	}
	if c.MaxReceivedHeaders <= 0 {
		c.MaxReceivedHeaders = defaultMaxReceivedHeaders
	}
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxConns
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = defaultMaxConnsPerIP
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = defaultMaxLineLength
	}
	if c.MaxErrors <= 0 {
		c.MaxErrors = defaultMaxErrors
	}
	dur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	dur(&c.CommandTimeout, defaultCommandTimeout)
	dur(&c.DataTimeout, defaultDataTimeout)
	dur(&c.WriteTimeout, defaultWriteTimeout)
}

// Deps are the services a Server uses. Auth may be nil for MX.
type Deps struct {
	Store   store.Store
	Deliver *deliver.Deliverer
	Auth    *auth.Authenticator
	Log     *slog.Logger
	// Checker, when set, authenticates what arrives on the MX (SPF,
	// DKIM, DMARC) before it is delivered; see data.go.
	Checker Checker
}

// Checker authenticates a received message (msgauth.Checker).
type Checker interface {
	Check(ctx context.Context, env msgauth.Envelope, msg io.Reader) (*msgauth.Result, error)
}

// Server is one SMTP door. It may serve several listeners (587 and 465
// share a submission Server, and so its limits).
type Server struct {
	cfg     Config
	st      store.Store
	deliver *deliver.Deliverer
	auth    *auth.Authenticator
	checker Checker
	log     *slog.Logger
	smtp    *smtp.Server
	limiter *limits.ConnLimiter

	connID   atomic.Uint64
	draining atomic.Bool
	mu       sync.Mutex
	conns    map[*conn]struct{}
}

// New checks cfg and returns a Server.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	switch {
	case cfg.Hostname == "":
		return nil, errors.New("smtpd: Hostname is required")
	case cfg.Mode != MX && cfg.Mode != Submission:
		return nil, fmt.Errorf("smtpd: unknown mode %d", cfg.Mode)
	case deps.Store == nil || deps.Deliver == nil:
		return nil, errors.New("smtpd: Store and Deliver are required")
	case cfg.Mode == Submission && deps.Auth == nil:
		return nil, errors.New("smtpd: submission needs Auth")
	case cfg.Mode == Submission && cfg.TLS == nil && !cfg.AllowPlaintextAuth:
		return nil, errors.New("smtpd: submission needs TLS (or AllowPlaintextAuth for loopback tests)")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		st:      deps.Store,
		deliver: deps.Deliver,
		auth:    deps.Auth,
		checker: deps.Checker,
		log:     log.With("mode", cfg.Mode.String()),
		limiter: limits.NewConnLimiter(max(cfg.MaxConns, 0), max(cfg.MaxConnsPerIP, 0)),
		conns:   make(map[*conn]struct{}),
	}
	s.smtp = s.newSMTPServer()
	return s, nil
}

// newSMTPServer sets every go-smtp limit explicitly: zero means unlimited
// there.
func (s *Server) newSMTPServer() *smtp.Server {
	ss := smtp.NewServer(backend{s})
	ss.Domain = s.cfg.Hostname
	ss.TLSConfig = s.cfg.TLS
	ss.LMTP = false
	// RFC 4954 §4 and RFC 8314 §3: AUTH only over TLS, unless explicitly
	// allowed for loopback tests.
	ss.AllowInsecureAuth = s.cfg.AllowPlaintextAuth
	// RFC 1870 SIZE: announced, checked against MAIL FROM SIZE= and
	// enforced while reading DATA and the sum of BDAT chunks.
	ss.MaxMessageBytes = s.cfg.MaxMessageBytes
	// RFC 5321 §4.5.3.1.8 (at least 100 must be accepted) and
	// §4.5.3.1.10 (452 beyond the limit, keeping those accepted).
	ss.MaxRecipients = s.cfg.MaxRecipients
	// RFC 5321 §4.5.3.1.4 (command line) and §4.5.3.1.6 (text line): one
	// limit for both in go-smtp; BDAT chunks are exempt.
	ss.MaxLineLength = s.cfg.MaxLineLength
	// RFC 5321 §4.5.3.2.7: server timeout waiting for the next command.
	// go-smtp arms it once per command line; during DATA the conn wrapper
	// re-arms DataTimeout (§4.5.3.2.5) before every read.
	ss.ReadTimeout = s.cfg.CommandTimeout
	ss.WriteTimeout = s.cfg.WriteTimeout
	ss.EnableSMTPUTF8 = true   // RFC 6531
	ss.EnableBINARYMIME = true // RFC 3030 (with CHUNKING, always on in go-smtp)
	ss.EnableDSN = true        // RFC 3461: RET, ENVID, NOTIFY, ORCPT
	// RFC 8689: offered over TLS only; local delivery keeps the promise
	// trivially, remote recipients are refused with it (session.Rcpt).
	ss.EnableREQUIRETLS = true
	ss.EnableRRVS = false      // RFC 7293: not implemented
	ss.EnableDELIVERBY = false // RFC 2852: not implemented
	ss.EnableMTPRIORITY = false
	ss.Debug = nil // transcripts are logged per session at LevelTrace
	ss.ErrorLog = errorLog{s.log}
	return ss
}

// Serve accepts plain connections on ln (25, or 587 with STARTTLS). It
// returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.smtp.Serve(&listener{Listener: ln, srv: s})
}

// ServeTLS accepts implicit-TLS connections on ln (465, RFC 8314 §3.3).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("smtpd: ServeTLS needs Config.TLS")
	}
	return s.smtp.Serve(&listener{Listener: ln, srv: s, tls: s.cfg.TLS})
}

// Shutdown stops accepting connections, tells idle clients 421 and closes
// them, lets transactions in progress finish (a message being received is
// delivered and acknowledged, then its connection is closed), and returns
// when every connection is gone. When ctx ends first the remaining
// connections are closed at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.smtp.Shutdown(ctx) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case err := <-done:
			if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				err = nil
			}
			if ctx.Err() != nil {
				s.closeAll()
				return ctx.Err()
			}
			return err
		case <-ctx.Done():
			s.closeAll()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) snapshot() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

// closeIdle says goodbye to every connection outside a transaction.
func (s *Server) closeIdle() {
	for _, c := range s.snapshot() {
		c.closeIfIdle()
	}
}

func (s *Server) closeAll() {
	for _, c := range s.snapshot() {
		c.Close()
	}
}

// errorLog takes go-smtp's internal error reports (failed TLS handshakes,
// recovered panics) into slog.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	l.log.Warn("smtp server", "detail", fmt.Sprintf(format, v...))
}

func (l errorLog) Println(v ...any) {
	l.log.Warn("smtp server", "detail", fmt.Sprint(v...))
}
