package imapd

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
)

// extensions is what every session advertises; each is implemented (see
// the command table and the handlers).
var extensions = []string{
	"IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE",
	"NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE",
	"CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "SEARCHRES",
	"STATUS=SIZE", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC", "BINARY",
	"QUOTA", "QUOTA=RES-STORAGE", "COMPRESS=DEFLATE", "SORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
	"MULTIAPPEND",
}

func (c *conn) capabilities() string {
	caps := append([]string(nil), extensions...)
	caps = append(caps, "APPENDLIMIT="+strconv.FormatInt(c.srv.cfg.MaxLiteralBytes, 10))
	if c.state == stateNotAuth {
		if c.srv.cfg.TLS != nil && !c.tls {
			caps = append(caps, "STARTTLS")
		}
		if c.plaintextRefused() {
			caps = append(caps, "LOGINDISABLED")
		} else {
			for _, m := range auth.Mechanisms {
				caps = append(caps, "AUTH="+m)
			}
		}
	}
	return strings.Join(caps, " ")
}

// plaintextRefused: passwords are not accepted without TLS (RFC 3501
// §6.2.3, RFC 8314) unless configured for loopback benchmarks.
func (c *conn) plaintextRefused() bool { return !c.tls && !c.srv.cfg.AllowPlaintextAuth }

func (c *conn) cmdCapability(tag string, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	c.writeLine("* CAPABILITY " + c.capabilities())
	return c.ok(tag, "", "CAPABILITY completed")
}

func (c *conn) cmdNoop(tag string, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	c.dirty = true
	return c.ok(tag, "", "NOOP completed")
}

func (c *conn) cmdLogout(tag string, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	c.writeLine("* BYE Logging out")
	c.writeLine(tag + " OK LOGOUT completed")
	c.flush()
	return nil
}

// cmdID answers RFC 2971 ID; what the client says is only logged.
func (c *conn) cmdID(tag string, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	var params []string
	if !p.takeWord("NIL") {
		err := p.list(func() error {
			k, err := p.string()
			if err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
			var v string
			if !p.takeWord("NIL") {
				if v, err = p.string(); err != nil {
					return err
				}
			}
			if len(params) < 60 {
				params = append(params, k, v)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if len(params) > 0 {
		c.log.Debug("client id", "id", params)
	}
	c.writeLine(`* ID ("name" "Tern")`)
	return c.ok(tag, "", "ID completed")
}

func (c *conn) cmdStartTLS(tag string, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	if c.srv.cfg.TLS == nil || c.tls {
		return badf("STARTTLS not available")
	}
	if c.br.Buffered() > 0 {
		// Plaintext pipelined after STARTTLS would be taken as sent over
		// TLS (CVE-2011-0411 style injection).
		c.writeLine(tag + " BAD Data after STARTTLS")
		c.flush()
		return errStop
	}
	c.writeLine(tag + " OK Begin TLS negotiation now")
	if err := c.flush(); err != nil {
		return errStop
	}
	if err := c.handshake(); err != nil {
		c.log.Debug("starttls handshake failed", "err", err)
		return errStop
	}
	return nil
}

func (c *conn) cmdLogin(tag string, p *parser) error {
	var user, pass string
	err := p.sp()
	if err == nil {
		user, err = p.astring()
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil {
		pass, err = p.astring()
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return err
	}
	if c.plaintextRefused() {
		return nof("PRIVACYREQUIRED", "LOGIN needs TLS: use STARTTLS or port 993")
	}
	return c.authenticate(tag, user, pass)
}

func (c *conn) authenticate(tag, user, pass string) error {
	if c.srv.login == nil {
		return nof("UNAVAILABLE", "Authentication unavailable")
	}
	acct, err := c.srv.login(c.ctx, c.ip, user, pass)
	if err != nil {
		return c.loginError(user, err)
	}
	c.loggedIn(acct)
	c.writeLine(tag + " OK [CAPABILITY " + c.capabilities() + "] Logged in")
	return nil
}

// loginError maps auth errors (RFC 5530 codes); the text never says
// whether the user exists.
func (c *conn) loginError(user string, err error) error {
	switch {
	case errors.Is(err, auth.ErrThrottled):
		return nof("UNAVAILABLE", "Too many failed logins, try again later")
	case errors.Is(err, auth.ErrInvalidCredentials):
		c.log.Info("login failed", "user", user)
		return nof("AUTHENTICATIONFAILED", "Invalid credentials")
	case errors.Is(err, auth.ErrMalformed): // its text says what, safe to show
		c.log.Info("login failed", "err", err)
		return badf("Malformed authentication exchange: %s", err)
	}
	c.log.Info("login failed", "user", user, "err", err)
	return nof("AUTHENTICATIONFAILED", "Authentication failed")
}

func (c *conn) loggedIn(acct store.Account) {
	c.acct = acct
	c.state = stateAuth
	c.log = c.log.With("user", acct.Address)
	c.notify, c.cancelNotify = c.srv.st.Subscribe(acct.ID)
	c.log.Info("logged in", "tls", c.tls)
}

// cmdAuthenticate runs a SASL exchange (SCRAM-SHA-256, PLAIN or LOGIN,
// from auth), with an initial response when given (SASL-IR, RFC 4959;
// "=" is empty).
func (c *conn) cmdAuthenticate(tag string, p *parser) error {
	var mech string
	err := p.sp()
	if err == nil {
		mech, err = p.atom()
	}
	if err != nil {
		return err
	}
	var resp []byte
	if p.take(' ') {
		s := p.span(func(b byte) bool { return b != ' ' })
		if resp, err = decodeSASL(s); err != nil || s == "" {
			return badf("Invalid base64")
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if c.plaintextRefused() {
		return nof("PRIVACYREQUIRED", "Authentication needs TLS")
	}
	if c.srv.login == nil {
		return nof("UNAVAILABLE", "Authentication unavailable")
	}
	// PLAIN, LOGIN and SCRAM-SHA-256 end alike: the account, or an error
	// for loginError.
	var acct store.Account
	var user string
	result := func(a store.Account, err error) error {
		acct = a
		return err
	}
	var scram auth.SCRAMLogin
	if c.srv.scram != nil {
		scram = c.srv.scram(c.ctx, c.ip, result)
	}
	srv, err := auth.NewSASLServer(mech, func(u, pass string) error {
		user = u
		return result(c.srv.login(c.ctx, c.ip, u, pass))
	}, scram)
	if err != nil {
		return nof("CANNOT", "Unsupported mechanism")
	}
	for round := 0; ; round++ {
		chal, done, err := srv.Next(resp)
		if err != nil {
			return c.loginError(user, err)
		}
		if done {
			break
		}
		if round >= 4 {
			return badf("Too many SASL rounds")
		}
		c.writeLine("+ " + base64.StdEncoding.EncodeToString(chal))
		if err := c.flush(); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if string(line) == "*" {
			return badf("Authentication cancelled")
		}
		if resp, err = decodeSASL(string(line)); err != nil {
			return badf("Invalid base64")
		}
	}
	c.loggedIn(acct)
	c.writeLine(tag + " OK [CAPABILITY " + c.capabilities() + "] Logged in")
	return nil
}

// decodeSASL decodes a SASL response: base64, or "=" for an empty one.
// RFC 4959 §3 defines "=" for the initial response; go-imap's client
// sends it for any empty response (such as the one that acknowledges
// SCRAM's server-final-message), and it cannot mean anything else.
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// cmdEnable turns on extensions that change responses (RFC 5161).
func (c *conn) cmdEnable(tag string, p *parser) error {
	var names []string
	for p.take(' ') {
		a, err := p.atom()
		if err != nil {
			return err
		}
		names = append(names, a)
	}
	if err := p.end(); err != nil {
		return err
	}
	if len(names) == 0 {
		return badf("ENABLE needs capability names")
	}
	var enabled []string
	for _, n := range names {
		switch strings.ToUpper(n) {
		case "CONDSTORE":
			if !c.condstore {
				c.condstore = true
				enabled = append(enabled, "CONDSTORE")
			}
		case "QRESYNC":
			if !c.qresync {
				c.qresync, c.condstore = true, true
				enabled = append(enabled, "QRESYNC")
			}
		case "IMAP4REV2":
			if !c.rev2 {
				c.rev2, c.utf8 = true, true
				enabled = append(enabled, "IMAP4rev2")
			}
		case "UTF8=ACCEPT":
			if !c.utf8 {
				c.utf8 = true
				enabled = append(enabled, "UTF8=ACCEPT")
			}
		}
	}
	c.writeLine(strings.TrimSpace("* ENABLED " + strings.Join(enabled, " ")))
	return c.ok(tag, "", "ENABLE completed")
}

func (c *conn) cmdNamespace(tag string, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	c.writeLine(`* NAMESPACE (("" "/")) NIL NIL`)
	return c.ok(tag, "", "NAMESPACE completed")
}
