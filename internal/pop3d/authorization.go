package pop3d

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
)

// errSASL marks a malformed SASL exchange, as opposed to a failure of the
// credentials check.
var errSASL = errors.New("SASL exchange failed")

func (ss *session) dispatchAuthorization(cmd, arg string) (quit bool) {
	switch cmd {
	case "USER":
		return ss.cmdUser(arg)
	case "PASS":
		return ss.cmdPass(arg)
	case "AUTH":
		return ss.cmdAuth(arg)
	case "STLS":
		return ss.cmdStls(arg)
	case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
		return ss.badCommand("not logged in")
	}
	return ss.badCommand("unknown command")
}

// cmdCapa is RFC 2449 §5. What it lists depends on the state and on TLS.
func (ss *session) cmdCapa(arg string) bool {
	if arg != "" {
		return ss.badCommand("CAPA takes no argument")
	}
	ss.ok("capability list follows")
	ss.line("TOP")
	ss.line("UIDL")
	ss.line("RESP-CODES")
	ss.line("AUTH-RESP-CODE")
	ss.line("PIPELINING")
	if ss.state == stateAuthorization {
		if ss.authAllowed() {
			ss.line("USER")
			ss.line("SASL " + strings.Join(auth.Mechanisms, " "))
		}
		if ss.s.cfg.TLS != nil && !ss.isTLS {
			ss.line("STLS")
		}
	}
	ss.line("IMPLEMENTATION Tern")
	ss.line(".")
	return false
}

// cmdQuit is RFC 1939 §4 (AUTHORIZATION) and §6 (UPDATE).
func (ss *session) cmdQuit(arg string) bool {
	if arg != "" {
		return ss.badCommand("QUIT takes no argument")
	}
	if ss.state == stateTransaction {
		if err := ss.update(); err != nil {
			ss.err("[SYS/TEMP] some deleted messages not removed, try again")
			return true
		}
	}
	ss.ok("%s signing off", ss.s.cfg.Hostname)
	return true
}

// authAllowed reports whether credentials may be sent now: over TLS, or in
// the clear when the configuration allows it.
func (ss *session) authAllowed() bool {
	return ss.isTLS || ss.s.cfg.AllowPlaintextAuth
}

func (ss *session) refusePlaintext() bool {
	return ss.badCommand("[AUTH] authentication over an unencrypted connection is not allowed: use STLS or port 995")
}

// cmdUser is RFC 1939 §7 USER.
func (ss *session) cmdUser(arg string) bool {
	if !ss.authAllowed() {
		return ss.refusePlaintext()
	}
	if arg == "" {
		return ss.badCommand("USER needs a user name")
	}
	// The reply does not tell whether the user exists.
	ss.user = arg
	ss.ok("send PASS")
	return false
}

// cmdPass is RFC 1939 §7 PASS. The password is the rest of the line,
// spaces included (RFC 1939 §7 allows it).
func (ss *session) cmdPass(arg string) bool {
	if !ss.authAllowed() {
		return ss.refusePlaintext()
	}
	user := ss.user
	ss.user = ""
	if user == "" {
		return ss.badCommand("PASS must follow USER")
	}
	acct, err := ss.s.login(ss.ctx, ss.remote, user, arg)
	if err != nil {
		return ss.loginFailed(err)
	}
	ss.loggedIn(acct)
	return false
}

// cmdAuth is RFC 5034 AUTH, with the RFC 1734-era bare "AUTH" listing the
// mechanisms, which some clients still send.
func (ss *session) cmdAuth(arg string) bool {
	if !ss.authAllowed() {
		return ss.refusePlaintext()
	}
	ss.user = ""
	if arg == "" {
		ss.ok("SASL mechanisms follow")
		for _, m := range auth.Mechanisms {
			ss.line(m)
		}
		ss.line(".")
		return false
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	known := false
	for _, m := range auth.Mechanisms {
		known = known || m == mech
	}
	if !known {
		return ss.badCommand("unsupported SASL mechanism")
	}
	// PLAIN, LOGIN and SCRAM-SHA-256 end alike: the account, or the
	// error loginFailed answers.
	var (
		acct     store.Account
		loginErr error
		authed   bool
	)
	result := func(a store.Account, err error) error {
		acct, loginErr = a, err
		authed = err == nil
		return err
	}
	var scram auth.SCRAMLogin
	if ss.s.scram != nil {
		scram = ss.s.scram(ss.ctx, ss.remote, result)
	}
	srv, err := auth.NewSASLServer(mech, func(username, password string) error {
		return result(ss.s.login(ss.ctx, ss.remote, username, password))
	}, scram)
	if err != nil {
		ss.log.Error("pop3 SASL", "mech", mech, "err", err)
		ss.err("[SYS/TEMP] authentication unavailable")
		return false
	}
	var resp []byte
	if hasIR {
		// RFC 5034 §4: "=" is an empty initial response.
		if resp, err = decodeSASL(ir); err != nil {
			return ss.badCommand("invalid base64 in initial response")
		}
	}
	quit, err := ss.saslExchange(srv, resp)
	switch {
	case quit || errors.Is(err, errCancelled):
		return quit
	case loginErr != nil:
		return ss.loginFailed(loginErr)
	case errors.Is(err, auth.ErrMalformed):
		return ss.loginFailed(err)
	case err != nil:
		// The mechanism rejected the client's message itself.
		return ss.loginFailed(fmt.Errorf("%w: %w", errSASL, err))
	case !authed: // a mechanism that ends without checking credentials
		return ss.loginFailed(errSASL)
	}
	ss.loggedIn(acct)
	return false
}

// errCancelled is a SASL exchange the client cancelled.
var errCancelled = errors.New("authentication cancelled")

// saslExchange runs challenges and responses (RFC 5034 §4) until the
// mechanism is done or fails. When it returns quit, or errCancelled, it
// has answered the client already.
func (ss *session) saslExchange(srv sasl.Server, resp []byte) (quit bool, err error) {
	for {
		chal, done, err := srv.Next(resp)
		if err != nil || done {
			return false, err
		}
		ss.bw.WriteString("+ " + base64.StdEncoding.EncodeToString(chal) + "\r\n")
		line, err := ss.readLine(maxSASLLineLen)
		if errors.Is(err, errLineTooLong) {
			return ss.badCommand("SASL response too long"), errCancelled
		} else if err != nil {
			return true, err
		}
		if line == "*" { // the client cancels
			ss.err("authentication cancelled")
			return false, errCancelled
		}
		if resp, err = decodeSASL(line); err != nil {
			return ss.badCommand("invalid base64 in SASL response"), errCancelled
		}
	}
}

// decodeSASL decodes a SASL response: base64, or "=" for an empty one,
// which RFC 5034 §4 defines for the initial response and some clients
// send for any empty response.
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// loginFailed answers a failed login with the RFC 3206 response code that
// tells a client whether to ask the user for another password ([AUTH]) or
// to try again later ([SYS/TEMP]).
func (ss *session) loginFailed(err error) (quit bool) {
	ss.authFail++
	quit = ss.authFail >= maxAuthFailures
	switch {
	case errors.Is(err, auth.ErrThrottled):
		// Retrying with another password would not help: the
		// Authenticator refuses every attempt until the window passes.
		ss.log.Info("pop3 login throttled")
		ss.err("[SYS/TEMP] too many failed logins, try again later")
	case errors.Is(err, auth.ErrInvalidCredentials):
		ss.log.Info("pop3 login failed")
		ss.err("[AUTH] invalid user name or password")
	case errors.Is(err, auth.ErrMalformed): // its text says what, safe to show
		ss.log.Info("pop3 login failed", "err", err)
		ss.err("malformed authentication exchange: %s", err)
	case errors.Is(err, errSASL):
		ss.log.Info("pop3 login failed", "err", err)
		ss.err("[AUTH] authentication failed")
	default:
		ss.log.Error("pop3 login", "err", err)
		ss.err("[SYS/TEMP] temporary failure, try again later")
	}
	if quit {
		ss.log.Info("pop3 session closed: too many failed logins")
	}
	return quit
}

// cmdStls is RFC 2595 §4.
func (ss *session) cmdStls(arg string) bool {
	if arg != "" {
		return ss.badCommand("STLS takes no argument")
	}
	if ss.s.cfg.TLS == nil {
		return ss.badCommand("STLS not available")
	}
	if ss.isTLS {
		return ss.badCommand("TLS already active")
	}
	ss.ok("begin TLS negotiation")
	if err := ss.flush(); err != nil {
		return true
	}
	if err := ss.startTLS(); err != nil {
		ss.log.Debug("pop3 STLS handshake failed", "err", err)
		return true
	}
	ss.user = ""
	return false
}
