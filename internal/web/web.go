// Package web is Tern's webmail and admin door: server-rendered HTML over
// the store, a small stylesheet and one static script (no inline scripts,
// a strict Content-Security-Policy). It keeps no state beyond in-memory
// sessions; sending goes through deliver like SMTP submission does.
//
// Pages address mailboxes by ID and messages by mailbox ID and UID:
//
//	/mailbox/{mb}?q=&sort=&page=     message list, 50 a page
//	/message/{mb}/{uid}              reading page
//	/message/{mb}/{uid}/html         the body, for a sandboxed iframe
//	/message/{mb}/{uid}/part/{path}  one decoded part, as a download
//	/compose?mode=&mb=&uid=          new, reply, reply all, forward, draft
//	/events                          Server-Sent Events from Store.Subscribe
//	/folders, /folders/{mb}/...      create, rename, delete folders
//	/admin, /admin/queue/{id}        admin accounts only
//
// Security model: sessions are 256-bit random IDs held in memory, in an
// HttpOnly, SameSite=Strict cookie that is Secure over TLS; every POST
// passes net/http's cross-origin check and carries the session's CSRF
// token; redirects go only to paths built here. Message HTML is sanitised
// with bluemonday (remote images dropped unless asked for) and shown in an
// iframe sandboxed without scripts or same-origin, under its own CSP that
// lets nothing load but inline images; attachments are always sent as
// application/octet-stream downloads.
package web

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/limits"
	"github.com/ternmail/tern/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = http.ErrServerClosed

// Defaults for the zero values of Config.
const (
	DefaultSessionIdle     = 2 * time.Hour
	DefaultSessionLifetime = 24 * time.Hour
	DefaultMaxSessions     = 10000
	DefaultMaxMessageBytes = 25 << 20
	DefaultMaxConns        = 1000
	DefaultMaxConnsPerIP   = 50
)

// pageSize is the number of messages a list page shows.
const pageSize = 50

// Config is the web door's policy. Every zero value is documented.
type Config struct {
	// Hostname names this server in Message-IDs and page titles
	// (required).
	Hostname string
	// TLS is required by ServeTLS. Cookies are marked Secure on every
	// request that arrived over TLS.
	TLS *tls.Config
	// MaxMessageBytes bounds a composed message with its attachments, the
	// same limit as SMTP's (default DefaultMaxMessageBytes).
	MaxMessageBytes int64
	// SessionIdle ends a session unused for this long, SessionLifetime
	// any session this old (defaults DefaultSessionIdle and
	// DefaultSessionLifetime).
	SessionIdle, SessionLifetime time.Duration
	// MaxSessions bounds the sessions held in memory; the least recently
	// used is dropped past it (default DefaultMaxSessions).
	MaxSessions int
	// MaxConns and MaxConnsPerIP cap open connections in total and per
	// client network (defaults DefaultMaxConns, DefaultMaxConnsPerIP). A
	// browser opens about six per server, one of them held by the event
	// stream of each tab.
	MaxConns, MaxConnsPerIP int
}

// Deps are the services the door uses. All but Log are required; a nil
// Log discards.
type Deps struct {
	Store    store.Store
	Deliver  *deliver.Deliverer
	Auth     *auth.Authenticator
	Accounts *accounts.Manager
	Log      *slog.Logger
	// Mount serves other handlers at exact paths on the same listener:
	// client autoconfiguration and the MTA-STS policy, which mail clients
	// and peers fetch from the names pointing at this server.
	Mount map[string]http.Handler
}

// Server is the HTTP server of webmail and admin pages.
type Server struct {
	cfg      Config
	st       store.Store
	deliver  *deliver.Deliverer
	auth     *auth.Authenticator
	accounts *accounts.Manager
	log      *slog.Logger
	tmpl     map[string]*template.Template
	sessions *sessions
	limiter  *limits.ConnLimiter
	policies policies
	mount    map[string]http.Handler
	now      func() time.Time
	handler  http.Handler

	// done is closed by Shutdown so that event streams end and let the
	// HTTP server drain.
	done     chan struct{}
	doneOnce sync.Once
	http     *http.Server
}

// New returns a server over deps.
func New(cfg Config, deps Deps) (*Server, error) {
	switch {
	case deps.Store == nil:
		return nil, errors.New("web: Deps.Store is nil")
	case deps.Deliver == nil:
		return nil, errors.New("web: Deps.Deliver is nil")
	case deps.Auth == nil:
		return nil, errors.New("web: Deps.Auth is nil")
	case deps.Accounts == nil:
		return nil, errors.New("web: Deps.Accounts is nil")
	case cfg.Hostname == "":
		return nil, errors.New("web: Config.Hostname is empty")
	case cfg.MaxMessageBytes < 0 || cfg.SessionIdle < 0 || cfg.SessionLifetime < 0 || cfg.MaxSessions < 0 ||
		cfg.MaxConns < 0 || cfg.MaxConnsPerIP < 0:
		return nil, errors.New("web: negative limit in Config")
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.SessionIdle == 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, st: deps.Store, deliver: deps.Deliver, auth: deps.Auth,
		accounts: deps.Accounts, log: log, tmpl: tmpl, mount: deps.Mount,
		policies: newPolicies(),
		limiter:  limits.NewConnLimiter(cfg.MaxConns, cfg.MaxConnsPerIP),
		now:      time.Now,
		done:     make(chan struct{}),
	}
	s.sessions = newSessions(cfg.SessionIdle, cfg.SessionLifetime, cfg.MaxSessions, func() time.Time { return s.now() })
	s.handler = s.routes()
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Uploads of MaxMessageBytes over slow links need time; the
		// event stream clears its own write deadline.
		ReadTimeout:    10 * time.Minute,
		WriteTimeout:   10 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:      cfg.TLS,
	}
	s.http.RegisterOnShutdown(s.closeDone)
	return s, nil
}

func (s *Server) closeDone() { s.doneOnce.Do(func() { close(s.done) }) }

// Serve accepts plain HTTP connections on ln. It returns ErrServerClosed
// after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(&limitedListener{Listener: ln, lim: s.limiter})
}

// ServeTLS accepts HTTPS connections on ln; it needs Config.TLS.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("web: ServeTLS needs Config.TLS")
	}
	return s.http.ServeTLS(&limitedListener{Listener: ln, lim: s.limiter}, "", "")
}

// Shutdown stops accepting, ends event streams and waits for requests in
// flight until ctx ends; then it closes the connections still open.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeDone()
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	return err
}

// routes builds the handler tree. Every response gets the security
// headers; every POST passes the cross-origin check and, behind login,
// the session's CSRF token.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", cacheStatic(fileServer))

	for path, h := range s.mount {
		mux.Handle(path, h)
	}

	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginPost)
	mux.Handle("POST /logout", s.user(s.logout))

	mux.Handle("GET /{$}", s.user(s.home))
	mux.Handle("GET /mailbox/{mb}", s.user(s.mailboxPage))
	mux.Handle("POST /mailbox/{mb}", s.user(s.mailboxAction))
	mux.Handle("GET /message/{mb}/{uid}", s.user(s.messagePage))
	mux.Handle("GET /message/{mb}/{uid}/html", s.user(s.messageHTML))
	mux.Handle("GET /message/{mb}/{uid}/part/{part}", s.user(s.partDownload))
	mux.Handle("POST /message/{mb}/{uid}", s.user(s.messageAction))
	mux.Handle("GET /compose", s.user(s.composePage))
	mux.Handle("POST /compose", s.user(s.composePost))
	mux.Handle("GET /events", s.user(s.events))
	mux.Handle("GET /counts", s.user(s.counts))
	mux.Handle("GET /folders", s.user(s.foldersPage))
	mux.Handle("POST /folders/create", s.user(s.folderCreate))
	mux.Handle("POST /folders/{mb}/rename", s.user(s.folderRename))
	mux.Handle("GET /folders/{mb}/delete", s.user(s.folderDeletePage))
	mux.Handle("POST /folders/{mb}/delete", s.user(s.folderDelete))

	mux.Handle("GET /admin", s.admin(s.adminPage))
	mux.Handle("POST /admin/{action}", s.admin(s.adminPost))
	mux.Handle("GET /admin/queue/{id}", s.admin(s.queueEntryPage))

	cop := http.NewCrossOriginProtection()
	return s.recoverer(securityHeaders(cop.Handler(mux)))
}

// The main pages' policy: nothing but our own script and stylesheet; the
// message HTML sets its own, stricter one.
const pageCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a handler panic into a 500 and a log line: the
// connection boundary of this door.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
