package web

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/netip"
	"strings"

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
)

const cookieName = "tern_session"

// userCtx is what a handler behind login knows of its caller.
type userCtx struct {
	sess   *session
	acct   store.Account
	remote netip.Addr
}

type userHandler func(w http.ResponseWriter, r *http.Request, u *userCtx)

// Body limits of POST requests: forms are small; the compose form carries
// the attachments raw, so MaxMessageBytes (the SMTP limit) plus room for
// the fields bounds it. The message built from it is checked again, with
// its base64, against MaxMessageBytes.
const maxFormBytes = 1 << 20

func (s *Server) maxPostBytes(r *http.Request) int64 {
	if r.URL.Path == "/compose" {
		return s.cfg.MaxMessageBytes + maxFormBytes
	}
	return maxFormBytes
}

// user wraps a handler that needs a logged-in user. A GET without a
// session goes to the login page; a POST without a valid session or CSRF
// token is refused.
func (s *Server) user(h userHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sess *session
		if c, err := r.Cookie(cookieName); err == nil {
			sess = s.sessions.get(c.Value)
		}
		if sess == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/events" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		acct, err := s.st.GetAccountByID(r.Context(), sess.accountID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				s.sessions.remove(sess.id)
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			s.serverError(w, r, "loading account", err)
			return
		}
		if r.Method == http.MethodPost {
			if !s.checkPostCSRF(w, r, sess) {
				return
			}
		}
		h(w, r, &userCtx{sess: sess, acct: acct, remote: remoteIP(r)})
	})
}

// checkPostCSRF parses the form within its size limit and checks the
// session's token, from the form or the X-CSRF-Token header (fetch).
func (s *Server) checkPostCSRF(w http.ResponseWriter, r *http.Request, sess *session) bool {
	r.Body = http.MaxBytesReader(w, r.Body, s.maxPostBytes(r))
	token := r.Header.Get("X-CSRF-Token")
	if token == "" {
		var err error
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt == "multipart/form-data" {
			err = r.ParseMultipartForm(8 << 20)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "request too large: the limit is "+formatSize(s.cfg.MaxMessageBytes), http.StatusRequestEntityTooLarge)
				return false
			}
			http.Error(w, "bad form", http.StatusBadRequest)
			return false
		}
		token = r.PostFormValue("csrf")
	}
	if !sess.checkCSRF(token) {
		http.Error(w, "invalid or missing CSRF token; reload the page and try again", http.StatusForbidden)
		return false
	}
	return true
}

// admin wraps a handler for admin accounts only.
func (s *Server) admin(h userHandler) http.Handler {
	return s.user(func(w http.ResponseWriter, r *http.Request, u *userCtx) {
		if !u.acct.Admin {
			http.Error(w, "administrators only", http.StatusForbidden)
			return
		}
		h(w, r, u)
	})
}

type loginData struct {
	pageData
	User  string
	Error string
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil && s.sessions.get(c.Value) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", &loginData{pageData: pageData{Title: "Log in"}})
}

// loginPost checks credentials through auth.Login, which throttles
// failures per IP and per account like every other door. The login form
// has no session yet: cross-site posts are stopped by the cross-origin
// check (Sec-Fetch-Site / Origin) that guards every POST.
func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	user := strings.TrimSpace(r.PostFormValue("user"))
	pass := r.PostFormValue("password")
	acct, err := s.auth.Login(r.Context(), remoteIP(r), user, pass)
	if err != nil {
		msg, code := "Wrong address or password.", http.StatusUnauthorized
		switch {
		case errors.Is(err, auth.ErrThrottled):
			msg, code = "Too many failed logins. Try again in a few minutes.", http.StatusTooManyRequests
		case errors.Is(err, auth.ErrInvalidCredentials):
		case errors.Is(err, context.Canceled):
			return
		default:
			s.log.Error("login", "err", err)
			msg, code = "The server could not check your password. Try again later.", http.StatusInternalServerError
		}
		s.render(w, r, code, "login", &loginData{pageData: pageData{Title: "Log in"}, User: user, Error: msg})
		return
	}
	if c, err := r.Cookie(cookieName); err == nil {
		s.sessions.remove(c.Value)
	}
	sess := s.sessions.create(acct.ID)
	s.setCookie(w, r, sess.id, int(s.cfg.SessionLifetime.Seconds()))
	s.log.Info("web login", "user", acct.Address, "remote", remoteIP(r))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, u *userCtx) {
	s.sessions.remove(u.sess.id)
	s.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// setCookie sets (or with maxAge < 0 deletes) the session cookie:
// HttpOnly, SameSite=Strict, and Secure whenever the request came over
// TLS.
func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// remoteIP is the client's address. Tern is not meant to sit behind a
// proxy, so forwarding headers are not trusted.
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
