// Package imapd is Tern's IMAP server (IMAP4rev1, RFC 3501, and IMAP4rev2,
// RFC 9051) over the store.
//
// Tern has its own server rather than go-imap/v2's imapserver because that
// server (v2.0.0-beta.8, the only v2 release) has no CONDSTORE/QRESYNC,
// SORT/THREAD, COMPRESS, QUOTA, ID or METADATA, and cannot be extended
// without forking it. go-imap/v2's client is still used, in tests only.
//
// A session keeps no message data of its own: only the UIDs, MODSEQs and
// flags of the selected mailbox, to map sequence numbers and report changes.
// Everything else is read from the store when a command asks for it;
// APPEND literals are streamed into deliver.Spool, never buffered whole.
// Changes made elsewhere reach a session through Store.Subscribe and
// ChangesSince: at once during IDLE, else with the next command, EXPUNGE
// held back while FETCH, STORE, SEARCH, SORT or THREAD by sequence number
// run (RFC 3501 §7.4.1).
//
// Extensions (each advertised only because it is implemented): LITERAL+,
// SASL-IR (PLAIN, LOGIN), ID, ENABLE, IDLE, NAMESPACE, UIDPLUS, MOVE,
// UNSELECT, CHILDREN, SPECIAL-USE, CREATE-SPECIAL-USE, LIST-EXTENDED,
// LIST-STATUS, ESEARCH, SEARCHRES, STATUS=SIZE, UTF8=ACCEPT, CONDSTORE,
// QRESYNC, BINARY, QUOTA, COMPRESS=DEFLATE, SORT, THREAD=ORDEREDSUBJECT,
// THREAD=REFERENCES, APPENDLIMIT, MULTIAPPEND (all or none, through
// Store.DeliverAll).
//
// One file per command group: parser.go (the bounded command parser),
// conn.go (session loop, dispatch, replies), auth.go, mailbox.go,
// select.go (selected state and change reporting), fetch*.go,
// bodystructure.go, store.go, search*.go, sort.go, thread.go, copymove.go,
// expunge.go, append.go, idle.go, quota.go, compress.go with inflate.go.
package imapd

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

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/limits"
	"github.com/ternmail/tern/internal/store"
)

// Config is the server's policy. Zero values take the documented defaults.
type Config struct {
	Hostname string
	// TLS enables STARTTLS on Serve and is required by ServeTLS. Nil: no
	// STARTTLS advertised.
	TLS *tls.Config
	// AllowPlaintextAuth permits LOGIN and AUTHENTICATE without TLS; meant
	// for loopback benchmarks only. When false, LOGINDISABLED is
	// advertised before TLS (RFC 3501 §6.2.3).
	AllowPlaintextAuth bool
	// MaxLineBytes bounds one command line without its literals (default
	// 64 KiB; RFC 7162 §4 asks servers to accept at least 8192 octets).
	MaxLineBytes int
	// MaxLiteralBytes is the largest APPEND literal, advertised as
	// APPENDLIMIT (RFC 7889); default 50 MiB.
	MaxLiteralBytes int64
	// IdleTimeout is the autologout timer (RFC 3501 §5.4: at least 30
	// minutes); default 30m.
	IdleTimeout time.Duration
	// MaxConns and MaxConnsPerIP bound concurrent sessions (defaults 10000
	// and 50).
	MaxConns, MaxConnsPerIP int
}

// Deps are the services the server uses.
type Deps struct {
	Store   store.Store
	Deliver *deliver.Deliverer
	Auth    *auth.Authenticator
	Log     *slog.Logger
}

// Limits that are not configurable.
const (
	// maxDepth bounds nested parenthesised lists in a command.
	maxDepth = 32
	// maxBadCommands closes a session that sent that many BAD commands.
	maxBadCommands = 20
	// writeTimeout bounds every write to a client.
	writeTimeout = 5 * time.Minute
	// maxInlineLiteral bounds literals outside APPEND (names, search
	// strings, passwords).
	maxInlineLiteral = 64 << 10
)

// loginFunc, scramFunc, spoolFunc and appendFunc are the calls into auth
// and deliver; nil (no Deps.Auth or Deps.Deliver) makes LOGIN,
// AUTHENTICATE or APPEND answer UNAVAILABLE.
type (
	loginFunc  func(ctx context.Context, remote netip.Addr, user, pass string) (store.Account, error)
	scramFunc  func(ctx context.Context, remote netip.Addr, done func(store.Account, error) error) auth.SCRAMLogin
	spoolFunc  func(ctx context.Context, body io.Reader) (*deliver.Spooled, error)
	appendFunc func(ctx context.Context, accountID int64, mailbox string, items []deliver.AppendItem) ([]store.Delivered, error)
)

// Server serves IMAP. Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	st     store.Store
	login  loginFunc
	scram  scramFunc
	spool  spoolFunc
	append appendFunc
	log    *slog.Logger
	limit  *limits.ConnLimiter

	nextID   atomic.Uint64
	shutting atomic.Bool
	done     chan struct{} // closed by Shutdown

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
}

// New checks cfg, applies defaults and returns a server.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Store == nil {
		return nil, errors.New("imapd: Deps.Store is required")
	}
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = 64 << 10
	}
	if cfg.MaxLineBytes < 8192 {
		return nil, fmt.Errorf("imapd: MaxLineBytes %d below 8192 (RFC 7162 §4)", cfg.MaxLineBytes)
	}
	if cfg.MaxLiteralBytes == 0 {
		cfg.MaxLiteralBytes = 50 << 20
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 10000
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 50
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		st:        deps.Store,
		log:       log,
		limit:     limits.NewConnLimiter(cfg.MaxConns, cfg.MaxConnsPerIP),
		done:      make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	if deps.Auth != nil {
		s.login, s.scram = deps.Auth.Login, deps.Auth.SCRAM
	}
	if deps.Deliver != nil {
		s.spool = deps.Deliver.Spool
		s.append = deps.Deliver.AppendAll
	}
	return s, nil
}

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("imapd: server closed")

// Serve accepts plain connections (port 143) offering STARTTLS when
// Config.TLS is set.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS connections (port 993, RFC 8314).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("imapd: ServeTLS needs Config.TLS")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.accept(nc, implicitTLS)
	}
}

func (s *Server) accept(nc net.Conn, implicitTLS bool) {
	ip := limits.ClientIP(nc.RemoteAddr())
	release, ok := s.limit.Acquire(ip)
	if !ok {
		// RFC 3501 §7.1.5: BYE as greeting refuses the connection.
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(nc, "* BYE [UNAVAILABLE] Too many connections\r\n")
		nc.Close()
		return
	}
	c := newConn(s, nc, ip)
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		release()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer release()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		c.serve(implicitTLS)
	}()
}

// Shutdown stops accepting, says BYE to sessions waiting for a command
// (and to the others as soon as their command completes), and waits for
// them to end or ctx to expire, after which it closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutting.Swap(true) {
		close(s.done)
	}
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.interruptIfIdle()
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-finished
		return ctx.Err()
	}
}
