// Package daemon is the composition root: it builds the store, delivery,
// authentication and every door from a Config, opens the listeners, and
// drains them on shutdown. Only this package and cli pick the store
// implementation.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/certs"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/dnsrecords"
	"github.com/ternmail/tern/internal/imapd"
	"github.com/ternmail/tern/internal/mx"
	"github.com/ternmail/tern/internal/pop3d"
	"github.com/ternmail/tern/internal/relay"
	"github.com/ternmail/tern/internal/smtpd"
	"github.com/ternmail/tern/internal/srs"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/web"
	"github.com/ternmail/tern/internal/wellknown"
)

// door is what every protocol server offers the daemon.
type door interface {
	Serve(net.Listener) error
	ServeTLS(net.Listener) error
	Shutdown(context.Context) error
}

// Daemon is a running Tern.
type Daemon struct {
	cfg    config.Config
	log    *slog.Logger
	st     store.Store
	certs  *certs.Manager
	lock   *os.File
	relay  *relay.Relay // nil unless [relay] enabled
	stopGC context.CancelFunc
	res    *mx.Resolver // made on first use (resolver)

	addrs   map[string]net.Addr
	doors   []door
	wg      sync.WaitGroup
	closing atomic.Bool // Serve errors after Shutdown began are expected
}

// traceHeaderAllowance is room for the Received and Return-Path headers
// added to a message the client sent within the size limit.
const traceHeaderAllowance = 64 << 10

// ErrRunning means another tern serve holds the data directory.
var ErrRunning = errors.New("another tern serve is already running on this data directory")

// Start opens the data directory, builds every door and starts listening.
// The caller stops it with Shutdown.
func Start(cfg config.Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, lock: lock, addrs: map[string]net.Addr{}}
	if err := d.build(); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Shutdown(ctx)
		return nil, err
	}
	return d, nil
}

// lockDir takes an exclusive lock on the data directory for the life of
// the process: admin commands may open the store meanwhile, a second
// server may not. The kernel releases it when the process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "serve.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrRunning)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

func (d *Daemon) build() error {
	cfg := d.cfg
	st, err := OpenStore(cfg, d.log.With("component", "store"))
	if err != nil {
		return err
	}
	d.st = st
	d.certs, err = d.openCerts()
	if err != nil {
		return err
	}
	tlsCfg := d.certs.TLSConfig()
	au := auth.New(st, auth.Config{
		MaxFailures: cfg.Limits.AuthMaxFailures,
		BaseDelay:   cfg.Limits.AuthFailureDelay.Duration,
	}, d.log.With("component", "auth"))
	var rw *srs.Rewriter
	if cfg.Relay.Enabled {
		// Forwarded mail is rewritten with SRS; the key must outlive
		// restarts for bounces to the addresses already handed out.
		key, err := srs.LoadKey(filepath.Join(cfg.DataDir, "srs.key"))
		if err != nil {
			return err
		}
		if rw, err = srs.New(srs.Config{Key: key}); err != nil {
			return err
		}
	}
	dl := deliver.New(st, deliver.Config{
		// The doors enforce max_message_bytes on what clients send; the
		// trace headers SMTP prepends must not push an accepted message
		// over the store's limit.
		MaxMessageBytes: cfg.Limits.MaxMessageBytes + traceHeaderAllowance,
		Relay:           cfg.Relay.Enabled,
		SRS:             rw,
	}, d.log.With("component", "deliver"))

	checker, trusted, err := d.checker()
	if err != nil {
		return err
	}
	lim := cfg.Limits
	addrOf := map[string]string{}
	for _, l := range cfg.Listeners() {
		addrOf[l.Name] = l.Addr
	}
	needed := func(names ...string) bool {
		for _, n := range names {
			if addrOf[n] != "" {
				return true
			}
		}
		return false
	}
	smtpCfg := func(mode smtpd.Mode) smtpd.Config {
		return smtpd.Config{
			Mode: mode, Hostname: cfg.Hostname, TLS: tlsCfg,
			AllowPlaintextAuth: cfg.AllowPlaintextAuth,
			MaxMessageBytes:    lim.MaxMessageBytes, MaxRecipients: lim.MaxRecipients,
			MaxConns: lim.MaxConns, MaxConnsPerIP: lim.MaxConnsPerIP,
			// smtp_timeout is the command timeout (RFC 5321 §4.5.3.2.7)
			// and, up to §4.5.3.2.5's 3 minutes, the wait for each block
			// of message data.
			CommandTimeout:  lim.SMTPTimeout.Duration,
			DataTimeout:     min(lim.SMTPTimeout.Duration, 3*time.Minute),
			TrustedNetworks: trusted,
		}
	}
	smtpDeps := smtpd.Deps{Store: st, Deliver: dl, Auth: au, Log: d.log.With("door", "smtp"), Checker: checker}
	// One server per door, shared by its plain and implicit-TLS ports so
	// they share one set of limits.
	var mx, sub, imap, pop door
	if needed("smtp") {
		if mx, err = smtpd.New(smtpCfg(smtpd.MX), smtpDeps); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
	}
	if needed("submission", "submissions") {
		if sub, err = smtpd.New(smtpCfg(smtpd.Submission), smtpDeps); err != nil {
			return fmt.Errorf("submission: %w", err)
		}
	}
	if needed("imap", "imaps") {
		if imap, err = d.newIMAP(tlsCfg, st, dl, au); err != nil {
			return fmt.Errorf("imap: %w", err)
		}
	}
	if needed("pop3", "pop3s") {
		if pop, err = d.newPOP3(tlsCfg, st, au); err != nil {
			return fmt.Errorf("pop3: %w", err)
		}
	}
	var webDoor door
	if needed("http", "https") {
		// The CA validates names on the web door (TLS-ALPN-01).
		if webDoor, err = d.newWeb(d.certs.ALPNConfig(tlsCfg), st, dl, au); err != nil {
			return fmt.Errorf("web: %w", err)
		}
	}
	for _, dr := range []door{mx, sub, imap, pop, webDoor} {
		if dr != nil {
			d.doors = append(d.doors, dr)
		}
	}
	listeners := []struct {
		name     string
		door     door
		implicit bool
	}{
		{"smtp", mx, false}, {"submission", sub, false}, {"submissions", sub, true},
		{"imap", imap, false}, {"imaps", imap, true}, {"pop3", pop, false}, {"pop3s", pop, true},
		// The web door marks cookies Secure on requests that arrive over
		// TLS.
		{"http", webDoor, false}, {"https", webDoor, true},
	}
	for _, l := range listeners {
		if addrOf[l.name] == "" {
			continue
		}
		ln, err := net.Listen("tcp", addrOf[l.name])
		if err != nil {
			return fmt.Errorf("listen.%s: %w", l.name, err)
		}
		d.addrs[l.name] = ln.Addr()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			serve := l.door.Serve
			if l.implicit {
				serve = l.door.ServeTLS
			}
			if err := serve(ln); err != nil && !d.closing.Load() {
				d.log.Error("listener stopped", "listener", l.name, "err", err)
			}
		}()
	}
	d.prefetchCert()
	d.startGC()
	return d.startRelay(dl)
}

func (d *Daemon) newIMAP(tlsCfg *tls.Config, st store.Store, dl *deliver.Deliverer, au *auth.Authenticator) (door, error) {
	lim := d.cfg.Limits
	return imapd.New(imapd.Config{
		Hostname: d.cfg.Hostname, TLS: tlsCfg, AllowPlaintextAuth: d.cfg.AllowPlaintextAuth,
		MaxLiteralBytes: lim.MaxMessageBytes, IdleTimeout: lim.IMAPIdleTimeout.Duration,
		MaxConns: lim.MaxConns, MaxConnsPerIP: lim.MaxConnsPerIP,
	}, imapd.Deps{Store: st, Deliver: dl, Auth: au, Log: d.log.With("door", "imap")})
}

func (d *Daemon) newPOP3(tlsCfg *tls.Config, st store.Store, au *auth.Authenticator) (door, error) {
	lim := d.cfg.Limits
	return pop3d.New(pop3d.Config{
		Hostname: d.cfg.Hostname, TLS: tlsCfg, AllowPlaintextAuth: d.cfg.AllowPlaintextAuth,
		IdleTimeout: lim.POP3IdleTimeout.Duration,
		MaxConns:    lim.MaxConns, MaxConnsPerIP: lim.MaxConnsPerIP,
	}, pop3d.Deps{Store: st, Auth: au, Log: d.log.With("door", "pop3")})
}

func (d *Daemon) newWeb(tlsCfg *tls.Config, st store.Store, dl *deliver.Deliverer, au *auth.Authenticator) (door, error) {
	return web.New(web.Config{
		Hostname: d.cfg.Hostname, TLS: tlsCfg, MaxMessageBytes: d.cfg.Limits.MaxMessageBytes,
		MaxConns: d.cfg.Limits.MaxConns, MaxConnsPerIP: d.cfg.Limits.MaxConnsPerIP,
	}, web.Deps{Store: st, Deliver: dl, Auth: au, Accounts: accounts.NewManager(st), Log: d.log.With("door", "web"),
		Mount: d.wellKnown(st)})
}

// wellKnown serves client autoconfiguration and the MTA-STS policy on the
// web listener, advertising the ports the doors listen on.
func (d *Daemon) wellKnown(st store.Store) map[string]http.Handler {
	port := func(addr string) int {
		if addr == "" {
			return 0
		}
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	l := d.cfg.Listen
	h := wellknown.New(wellknown.Config{Hostname: d.cfg.Hostname, Ports: dnsrecords.Ports{
		Submission: port(l.Submission), Submissions: port(l.Submissions),
		IMAP: port(l.IMAP), IMAPS: port(l.IMAPS), POP3: port(l.POP3), POP3S: port(l.POP3S),
	}}, st)
	m := map[string]http.Handler{}
	for _, p := range wellknown.Paths {
		m[p] = h
	}
	return m
}

// Store is the daemon's store, for bootstrapping the first account.
func (d *Daemon) Store() store.Store { return d.st }

// Addr is the bound address of a listener by its [listen] key, or nil.
func (d *Daemon) Addr(name string) net.Addr { return d.addrs[name] }

// CertFile is the certificate presented by TLS doors.
func (d *Daemon) CertFile() string { return d.certs.CertFile() }

// Reload re-reads the TLS certificate (SIGHUP).
func (d *Daemon) Reload() error { return d.certs.Reload() }

// Shutdown stops accepting, lets sessions finish until ctx ends, then
// closes the store.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.closing.Store(true)
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, dr := range d.doors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dr.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := d.stopRelay(ctx); err != nil {
		errs = append(errs, err)
	}
	if d.stopGC != nil {
		d.stopGC()
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		errs = append(errs, errors.New("listeners did not stop within 5s"))
	}
	errs = append(errs, d.close())
	return errors.Join(errs...)
}

func (d *Daemon) close() error {
	var err error
	if d.st != nil {
		err = d.st.Close()
	}
	if d.lock != nil {
		d.lock.Close()
	}
	return err
}
