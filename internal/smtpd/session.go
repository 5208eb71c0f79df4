package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
)

// LevelTrace logs the protocol transcript (commands and their outcome,
// AUTH redacted). It is below slog.LevelDebug.
const LevelTrace = slog.Level(-8)

type backend struct{ s *Server }

// NewSession is called by go-smtp at the first EHLO/HELO of a connection
// and again after STARTTLS (RFC 3207 §4.2: all state is forgotten).
func (b backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	c := connOf(sc.Conn())
	if c == nil {
		return nil, errNoConn
	}
	if b.s.draining.Load() {
		return nil, replyShuttingDown
	}
	s := &session{srv: b.s, conn: c, log: c.log}
	if state, ok := sc.TLSConnectionState(); ok {
		s.tls = &state
		if tc, ok := sc.Conn().(*tls.Conn); ok {
			c.setTLS(tc)
		}
	}
	s.helo = sc.Hostname()
	s.smtpConn = sc
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// session is one go-smtp session. go-smtp calls it from the connection
// goroutine, except Data for BDAT, which runs in a goroutine of its own
// while the connection goroutine may still call Reset, Auth or Logout: mu
// guards what they share and Data works on a copy of the transaction.
type session struct {
	srv      *Server
	conn     *conn
	smtpConn *smtp.Conn
	tls      *tls.ConnectionState // nil without TLS
	helo     string
	ctx      context.Context // ends at Logout
	cancel   context.CancelFunc

	mu      sync.Mutex
	log     *slog.Logger
	account *store.Account // after AUTH
	tx      *transaction   // from MAIL until the end of data or a reset
	// dataDone is closed when the latest Data call returns.
	dataDone chan struct{}
}

// transaction is one MAIL .. DATA/BDAT envelope.
type transaction struct {
	helo       string
	from       string // as the client wrote it, validated; "" is the null sender
	utf8       bool   // SMTPUTF8 (RFC 6531)
	binary     bool   // BODY=BINARYMIME (RFC 3030)
	requireTLS bool   // REQUIRETLS (RFC 8689)
	dsn        store.DSN
	rcpts      []deliver.Recipient
	notify     map[string]string
}

func (s *session) logger() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

func (s *session) trace(msg string, args ...any) {
	s.logger().Log(s.ctx, LevelTrace, msg, args...)
}

// fail counts a client error and returns the reply for it, or 421 once
// the client has used up Config.MaxErrors (the connection closes after
// that reply).
func (s *session) fail(r *smtp.SMTPError) *smtp.SMTPError {
	s.trace("refused", "code", r.Code, "reply", r.Message)
	if s.conn.countError() {
		return replyTooManyErrors
	}
	return r
}

func (s *session) getAccount() *store.Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.account
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.trace("MAIL", "from", from, "size", opts.Size, "body", string(opts.Body), "smtputf8", opts.UTF8)
	acct := s.getAccount()
	if s.srv.cfg.Mode == Submission && acct == nil {
		return s.fail(replyAuthRequired)
	}
	if opts.RequireTLS && s.tls == nil {
		// go-smtp accepts the parameter without TLS; RFC 8689 §4.1 does not.
		return s.fail(replyRequireTLSNeedsTLS)
	}
	s.mu.Lock()
	nested := s.tx != nil
	s.mu.Unlock()
	if nested {
		return s.fail(replyNestedMail)
	}
	if r := checkSender(from, opts.UTF8); r != nil {
		return s.fail(r)
	}
	if acct != nil {
		ok, err := accounts.CanSendAs(s.ctx, s.srv.st, *acct, from)
		if err != nil && !errors.Is(err, accounts.ErrInvalidAddress) {
			s.logger().Error("checking sender", "from", from, "err", err)
			return replyTempFailure
		}
		if !ok {
			return s.fail(reply(553, 5, 7, 1, "You are not allowed to send as <"+from+">"))
		}
	}
	tx := &transaction{
		helo:       s.smtpConn.Hostname(),
		from:       from,
		utf8:       opts.UTF8,
		binary:     opts.Body == smtp.BodyBinaryMIME,
		requireTLS: opts.RequireTLS,
		dsn:        store.DSN{Ret: string(opts.Return), EnvID: opts.EnvelopeID},
		notify:     map[string]string{},
	}
	s.mu.Lock()
	s.tx = tx
	s.mu.Unlock()
	s.conn.setBusy(true)
	return nil
}

// Rcpt resolves a recipient at once, so that unknown users and relay
// attempts are refused before any data (RFC 5321 §4.1.1.3, §3.6.2).
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.trace("RCPT", "to", to)
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return s.fail(replyBadSequence)
	}
	if r := checkRecipient(to, tx.utf8); r != nil {
		return s.fail(r)
	}
	rc, r := s.resolve(to)
	if r != nil {
		if r.Code/100 == 4 && r != replyQuota {
			return r // our problem, not the client's
		}
		return s.fail(r)
	}
	if tx.requireTLS && len(rc.Remote) > 0 {
		// RFC 8689 §4.2: the message may only travel on over TLS, which
		// deliver has no way to ask of the relay yet.
		return s.fail(reply(550, 5, 7, 30, "REQUIRETLS cannot be honoured for remote recipients"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != tx {
		return replyBadSequence
	}
	tx.rcpts = append(tx.rcpts, rc)
	if len(opts.Notify) > 0 {
		n := make([]string, len(opts.Notify))
		for i, v := range opts.Notify {
			n[i] = string(v)
		}
		tx.notify[rc.Address] = strings.Join(n, ",")
	}
	return nil
}

// resolve maps a recipient to its targets, or to the reply refusing it.
func (s *session) resolve(to string) (deliver.Recipient, *smtp.SMTPError) {
	rc, err := s.srv.deliver.Resolve(s.ctx, to)
	if errors.Is(err, deliver.ErrNotLocal) {
		if s.srv.cfg.Mode == MX || s.getAccount() == nil {
			return rc, replyRelayDenied
		}
		rc, err = s.srv.deliver.Remote(to)
	}
	switch {
	case err == nil:
		return rc, nil
	case errors.Is(err, deliver.ErrUnknownUser):
		return rc, replyUnknownUser
	case errors.Is(err, deliver.ErrBadAddress):
		return rc, replyBadRecipient
	case errors.Is(err, deliver.ErrRelayUnavailable):
		// Never accept and drop: the sender keeps the message and
		// retries (RFC 5321 §4.2.5).
		return rc, replyRelayUnavailable
	case errors.Is(err, store.ErrQuota):
		return rc, replyQuota
	}
	s.logger().Error("resolving recipient", "to", to, "err", err)
	return rc, replyTempFailure
}

// Reset ends the transaction (RSET, EHLO, STARTTLS, and after every
// message, once its reply is written).
//
// go-smtp resets a BDAT transaction (RSET, or a chunk over the size limit)
// by closing the pipe Data reads, without waiting for Data to return; the
// goroutine running Data then sends its result on a channel field that
// the next BDAT transaction replaces, so that transaction could get the
// aborted one's error. Waiting here for Data (which returns at once on
// the closed pipe) closes that window in practice.
func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	done := s.dataDone
	s.dataDone = nil
	s.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.logger().Warn("message data reader did not stop after a reset")
		}
	}
	s.conn.inData.Store(false)
	s.conn.setBusy(false)
}

// Logout is called when the connection closes or after STARTTLS.
func (s *session) Logout() error {
	s.cancel()
	s.conn.inData.Store(false)
	s.conn.setBusy(false)
	return nil
}

// AuthMechanisms lists the SASL mechanisms offered; go-smtp advertises
// them only over TLS unless AllowPlaintextAuth (RFC 4954 §4).
func (s *session) AuthMechanisms() []string {
	if s.srv.cfg.Mode != Submission {
		return nil // the MX takes mail for local users only
	}
	return auth.Mechanisms
}

// Auth starts a SASL exchange (RFC 4954).
func (s *session) Auth(mech string) (sasl.Server, error) {
	s.trace("AUTH", "mechanism", mech)
	if s.srv.cfg.Mode != Submission {
		return nil, s.fail(reply(502, 5, 5, 1, "AUTH is not offered on this port; use submission"))
	}
	srv, err := auth.NewSASLServer(mech, s.login, s.srv.auth.SCRAM(s.ctx, s.conn.remote, s.loggedIn))
	if err != nil {
		return nil, s.fail(smtp.ErrAuthUnknownMechanism)
	}
	return saslServer{srv, s}, nil
}

// saslServer gives every SASL failure a proper reply: go-smtp answers
// errors that are not *smtp.SMTPError with 454 and their text.
type saslServer struct {
	sasl.Server
	s *session
}

func (ss saslServer) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := ss.Server.Next(response)
	var se *smtp.SMTPError
	switch {
	case err == nil || errors.As(err, &se):
	case errors.Is(err, auth.ErrInvalidCredentials): // e.g. a PLAIN authzid naming someone else
		err = ss.s.fail(reply(535, 5, 7, 8, "Authentication credentials invalid"))
	case errors.Is(err, auth.ErrMalformed): // its text says what, safe to show
		err = ss.s.fail(reply(501, 5, 5, 2, "Malformed authentication exchange: "+err.Error()))
	default: // a malformed exchange
		err = ss.s.fail(reply(501, 5, 5, 2, "Malformed authentication exchange"))
	}
	return challenge, done, err
}

// login checks credentials for PLAIN and LOGIN.
func (s *session) login(username, password string) error {
	return s.loggedIn(s.srv.auth.Login(s.ctx, s.conn.remote, username, password))
}

// loggedIn takes the outcome of a credentials check, PLAIN, LOGIN or
// SCRAM-SHA-256 alike: it logs the session in, or returns the reply. An
// unknown user and a wrong password get the same reply
// (auth.ErrInvalidCredentials).
func (s *session) loggedIn(acct store.Account, err error) error {
	switch {
	case err == nil:
		s.mu.Lock()
		s.account = &acct
		s.log = s.log.With("user", acct.Address)
		s.mu.Unlock()
		s.logger().Info("authenticated")
		return nil
	case errors.Is(err, auth.ErrThrottled):
		return s.fail(reply(454, 4, 7, 0, "Too many failed logins, try again later"))
	case errors.Is(err, auth.ErrInvalidCredentials):
		return s.fail(reply(535, 5, 7, 8, "Authentication credentials invalid"))
	}
	s.logger().Error("login", "err", err)
	return reply(454, 4, 7, 0, "Temporary authentication failure")
}
