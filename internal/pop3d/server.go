package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/limits"
	"github.com/ternmail/tern/internal/store"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("pop3d: server closed")

// Defaults for the zero values of Config.
const (
	// DefaultIdleTimeout is RFC 1939 §3's autologout timer: "at least 10
	// minutes".
	DefaultIdleTimeout   = 10 * time.Minute
	DefaultMaxConns      = 1000
	DefaultMaxConnsPerIP = 20
)

// Config is the POP3 door's policy. The zero value of each field is
// documented; every limit has a finite default.
type Config struct {
	// Hostname is named in the greeting and the sign-off (required).
	Hostname string
	// TLS enables STLS on Serve and is required by ServeTLS. Nil means
	// no STLS, and ServeTLS fails.
	TLS *tls.Config
	// AllowPlaintextAuth lets USER/PASS and AUTH run before TLS. It is for
	// loopback benchmarks and tests only; by default credentials are
	// accepted only over TLS (RFC 2595 §4, RFC 8314 §3).
	AllowPlaintextAuth bool
	// IdleTimeout closes a session that sends nothing for this long
	// (default DefaultIdleTimeout; RFC 1939 §3 requires at least 10
	// minutes). It is also the deadline of each reply's write.
	IdleTimeout time.Duration
	// MaxConns and MaxConnsPerIP cap the open sessions in total and per
	// client address (defaults DefaultMaxConns, DefaultMaxConnsPerIP).
	MaxConns, MaxConnsPerIP int
}

// Deps are the services the door uses. Store and Auth are required; a nil
// Log discards.
type Deps struct {
	Store store.Store
	Auth  *auth.Authenticator
	Log   *slog.Logger
}

// loginFunc checks credentials; it is (*auth.Authenticator).Login.
type loginFunc func(ctx context.Context, remote netip.Addr, username, password string) (store.Account, error)

// scramFunc starts the account side of a SCRAM-SHA-256 exchange; it is
// (*auth.Authenticator).SCRAM. Without one, AUTH SCRAM-SHA-256 answers
// that authentication is unavailable.
type scramFunc func(ctx context.Context, remote netip.Addr, done func(store.Account, error) error) auth.SCRAMLogin

// Server is a POP3 server. Serve and ServeTLS may run on several listeners
// at once.
type Server struct {
	cfg     Config
	st      store.Store
	log     *slog.Logger
	login   loginFunc
	scram   scramFunc
	limiter *limits.ConnLimiter

	// bigBufs holds the *streamBufs of RETR and TOP, so an idle session
	// keeps only its small buffers.
	bigBufs sync.Pool

	// ctx is cancelled when Shutdown gives up waiting: store calls of
	// sessions still running then fail fast.
	ctx    context.Context
	cancel context.CancelFunc

	nextID   atomic.Uint64
	closing  atomic.Bool
	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	sessions map[*session]struct{}
	wg       sync.WaitGroup
}

// New returns a server over deps.Store that authenticates with deps.Auth.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Auth == nil {
		return nil, errors.New("pop3d: Deps.Auth is nil")
	}
	return newServer(cfg, deps.Store, deps.Log, deps.Auth.Login, deps.Auth.SCRAM)
}

// newServer is New with the authentication functions given, so tests and
// the fuzzer can run without password hashing.
func newServer(cfg Config, st store.Store, log *slog.Logger, login loginFunc, scram scramFunc) (*Server, error) {
	if st == nil {
		return nil, errors.New("pop3d: Deps.Store is nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		return nil, errors.New("pop3d: Config.Hostname is empty")
	}
	if cfg.IdleTimeout < 0 || cfg.MaxConns < 0 || cfg.MaxConnsPerIP < 0 {
		return nil, errors.New("pop3d: negative limit in Config")
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		st:       st,
		log:      log,
		login:    login,
		scram:    scram,
		limiter:  limits.NewConnLimiter(cfg.MaxConns, cfg.MaxConnsPerIP),
		ctx:      ctx,
		cancel:   cancel,
		lns:      map[net.Listener]struct{}{},
		sessions: map[*session]struct{}{},
	}
	s.bigBufs.New = func() any {
		return &streamBufs{read: make([]byte, streamBufSize), w: bufio.NewWriterSize(nil, streamBufSize)}
	}
	return s, nil
}

// Serve accepts POP3 connections on ln (port 110), offering STLS when
// Config.TLS is set. It returns ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, false)
}

// ServeTLS accepts implicit-TLS POP3 connections on ln (port 995, RFC 8314
// §3.3). It needs Config.TLS.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("pop3d: ServeTLS needs Config.TLS")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	if !s.trackListener(ln, true) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.trackListener(ln, false)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("pop3 accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("pop3d: accept: %w", err)
		}
		delay = 0
		// Add under mu, so that it happens before Shutdown's Wait or
		// not at all.
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c, implicitTLS)
	}
}

func (s *Server) trackListener(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.lns, ln)
		return true
	}
	if s.closing.Load() {
		return false
	}
	s.lns[ln] = struct{}{}
	return true
}

func (s *Server) trackSession(ss *session, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.sessions, ss)
		return true
	}
	if s.closing.Load() {
		return false
	}
	s.sessions[ss] = struct{}{}
	return true
}

// handle runs one connection: limits, then the session.
func (s *Server) handle(c net.Conn, implicitTLS bool) {
	defer s.wg.Done()
	remote := limits.ClientIP(c.RemoteAddr())
	release, ok := s.limiter.Acquire(remote)
	if !ok {
		s.log.Info("pop3 connection refused: too many connections", "remote", remote)
		if !implicitTLS {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("-ERR [SYS/TEMP] too many connections, try again later\r\n"))
		}
		c.Close()
		return
	}
	defer release()
	ss := newSession(s, c, remote)
	if !s.trackSession(ss, true) {
		c.Close()
		return
	}
	defer s.trackSession(ss, false)
	ss.run(implicitTLS)
}

// Shutdown stops accepting connections and ends every session at its next
// command boundary: sessions waiting for a command are told the server is
// going down and closed without entering the UPDATE state, so nothing is
// deleted; a command in progress (a QUIT's expunge, a RETR) completes.
// Shutdown waits for that until ctx ends, then closes what remains and
// returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.lns {
		ln.Close()
	}
	for ss := range s.sessions {
		ss.interrupt()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for ss := range s.sessions {
			ss.raw.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}
