package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/ternmail/tern/internal/accounts"
)

// Mechanisms are the SASL mechanisms NewSASLServer implements, in the
// order doors advertise them, the strongest first. PLAIN and LOGIN send
// the password in the clear, so doors offer them only over TLS (RFC 4616
// §6); SCRAM-SHA-256 never sends it, but without channel binding it does
// not detect a man in the middle either, so it is offered alike.
var Mechanisms = []string{SCRAMSHA256, sasl.Plain, sasl.Login}

// ErrAuthzid is returned (wrapping ErrInvalidCredentials) when a PLAIN or
// SCRAM client asks to act as another user: Tern has no proxy
// authorization.
var ErrAuthzid = fmt.Errorf("%w: authorization identity differs from the user", ErrInvalidCredentials)

// NewSASLServer returns a server for mech (any case): "SCRAM-SHA-256"
// (RFC 5802, RFC 7677), "PLAIN" (RFC 4616) or "LOGIN"
// (draft-murchison-sasl-login-00). PLAIN and LOGIN check a username and
// password with login, SCRAM-SHA-256 asks scram (Authenticator.SCRAM
// makes one), and is unsupported if scram is nil. Their errors end the
// exchange and are returned by Next.
func NewSASLServer(mech string, login func(username, password string) error, scram SCRAMLogin) (sasl.Server, error) {
	switch strings.ToUpper(mech) {
	case SCRAMSHA256:
		if scram != nil {
			return newSCRAMServer(scram), nil
		} // else unsupported, below
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if !sameUser(identity, username) {
				return ErrAuthzid
			}
			return login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{login: login}, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q", mech)
}

// sameUser reports whether an authorization identity names the
// authenticating user itself: empty, or the same address in any spelling.
func sameUser(authzid, username string) bool {
	if authzid == "" || authzid == username {
		return true
	}
	a, err1 := accounts.NormalizeAddress(authzid)
	u, err2 := accounts.NormalizeAddress(username)
	return err1 == nil && err2 == nil && a == u
}

// loginServer is the server side of the LOGIN mechanism: it prompts
// "Username:" then "Password:" and takes each answer as is. go-sasl has
// only the client side.
type loginServer struct {
	login    func(username, password string) error
	state    int // loginUser, loginPass or loginDone
	username string
}

const (
	loginUser = iota // waiting for the username
	loginPass        // waiting for the password
	loginDone
)

var errLoginDone = errors.New("sasl: LOGIN exchange already finished")

// Next implements sasl.Server. An initial response (AUTH LOGIN <user>, as
// some clients send) is taken as the username.
func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case loginUser:
		if response == nil {
			return []byte("Username:"), false, nil
		}
		s.username = string(response)
		s.state = loginPass
		return []byte("Password:"), false, nil
	case loginPass:
		s.state = loginDone
		return nil, true, s.login(s.username, string(response))
	}
	return nil, true, errLoginDone
}
