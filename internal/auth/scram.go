package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ternmail/tern/internal/accounts"
)

// SCRAMSHA256 is the SCRAM mechanism Tern offers (RFC 5802, RFC 7677).
// SCRAM-SHA-256-PLUS (channel binding) is not offered.
const SCRAMSHA256 = "SCRAM-SHA-256"

// ErrMalformed is matched (errors.Is) by the errors of a SCRAM exchange
// the client got wrong. Their text names the mechanism and the fault,
// never the client's data, so doors may show it.
var ErrMalformed = errors.New("malformed SASL exchange")

// malformedError is an error matching ErrMalformed.
type malformedError string

func (e malformedError) Error() string        { return string(e) }
func (e malformedError) Is(target error) bool { return target == ErrMalformed }

// SCRAMLogin is the account side of one SCRAM-SHA-256 exchange:
// Authenticator.SCRAM makes one per exchange. Its errors end the
// exchange and are returned by the mechanism's Next.
type SCRAMLogin interface {
	// Keys returns the keys to check username (unescaped and SASLprep'd)
	// against.
	Keys(username string) (accounts.SCRAMKeys, error)
	// Verify is told whether the client's proof matched the keys; nil
	// means the client is who it said, and the mechanism sends the
	// server-final-message.
	Verify(proofOK bool) error
	// Done is called once the client took the server-final-message: the
	// login is complete.
	Done() error
}

// Bounds on what a client may send.
const (
	maxSCRAMMessage = 4096 // octets of one client message
	maxClientNonce  = 512
)

// scramServer is the server side of SCRAM-SHA-256 (RFC 5802 §5 and §7):
//
//	C: n,,n=user,r=<client nonce>                      client-first-message
//	S: r=<client nonce><server nonce>,s=<salt>,i=4096    server-first-message
//	C: c=biws,r=<both nonces>,p=<ClientProof>           client-final-message
//	S: v=<ServerSignature>                               server-final-message
//	C: (empty)
//
// The server-final-message goes out as a challenge the client answers
// with an empty response, since SMTP AUTH (RFC 4954 §4) cannot carry
// data with its success reply. Any error ends the exchange.
type scramServer struct {
	login SCRAMLogin
	nonce func() string // the server's nonce; tests replace it
	state int

	gs2Header       string // "n,," etc., which c= must repeat
	clientFirstBare string
	serverFirst     string
	fullNonce       string
	keys            accounts.SCRAMKeys
}

const (
	scramStart = iota // nothing received yet
	scramFirst        // empty challenge sent, waiting for client-first
	scramFinal        // server-first sent, waiting for client-final
	scramAck          // server-final sent, waiting for the empty response
	scramDone
)

func newSCRAMServer(login SCRAMLogin) *scramServer {
	return &scramServer{login: login, nonce: rand.Text}
}

var errSCRAMDone = errors.New("sasl: SCRAM-SHA-256 exchange already finished")

// Next implements sasl.Server.
func (s *scramServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case scramStart, scramFirst:
		if response == nil && s.state == scramStart {
			// No initial response: the client speaks first (RFC 4422 §5).
			s.state = scramFirst
			return []byte{}, false, nil
		}
		challenge, err = s.first(response)
		s.state = scramFinal
	case scramFinal:
		challenge, err = s.final(response)
		s.state = scramAck
	case scramAck:
		s.state = scramDone
		if len(response) != 0 {
			return nil, true, scramErr("data after the server-final-message")
		}
		return nil, true, s.login.Done()
	default:
		return nil, true, errSCRAMDone
	}
	if err != nil {
		s.state = scramDone
		return nil, true, err
	}
	return challenge, false, nil
}

// first handles the client-first-message and returns the
// server-first-message.
func (s *scramServer) first(msg []byte) ([]byte, error) {
	if err := checkMessage(msg, "client-first-message"); err != nil {
		return nil, err
	}
	// gs2-header: the channel binding flag, then the authzid.
	flag, rest, _ := strings.Cut(string(msg), ",")
	switch {
	case flag == "n", flag == "y":
		// "y": the client could bind but thinks we cannot. We cannot
		// (no -PLUS offered), so this is no downgrade.
	case strings.HasPrefix(flag, "p="):
		return nil, scramErr("channel binding is not supported (SCRAM-SHA-256-PLUS is not offered)")
	default:
		return nil, scramErr("bad channel binding flag in the gs2 header")
	}
	authzField, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, scramErr("incomplete gs2 header")
	}
	var authzid string
	if authzField != "" {
		v, ok := strings.CutPrefix(authzField, "a=")
		if !ok {
			return nil, scramErr("bad authorization identity in the gs2 header")
		}
		var err error
		if authzid, err = saslName(v); err != nil {
			return nil, err
		}
	}
	s.gs2Header = string(msg[:len(flag)+len(authzField)+2])
	s.clientFirstBare = bare

	attrs, err := parseAttrs(bare, "client-first-message")
	if err != nil {
		return nil, err
	}
	if attrs[0].name == 'm' {
		return nil, scramErr("mandatory extensions (m=) are not supported")
	}
	if len(attrs) < 2 || attrs[0].name != 'n' || attrs[1].name != 'r' {
		return nil, scramErr("client-first-message must start with n= and r=")
	}
	user, err := saslName(attrs[0].value)
	if err != nil {
		return nil, err
	}
	if user, err = accounts.SASLprep(user); err != nil || user == "" {
		return nil, scramErr("username refused by SASLprep")
	}
	cnonce := attrs[1].value
	if cnonce == "" || len(cnonce) > maxClientNonce || !printable(cnonce) {
		return nil, scramErr("bad client nonce")
	}
	// Extensions past r= are optional ones (RFC 5802 §5.1), ignored.
	if !sameUser(authzid, user) {
		return nil, ErrAuthzid
	}
	keys, err := s.login.Keys(user)
	if err != nil {
		return nil, err
	}
	s.keys = keys
	s.fullNonce = cnonce + s.nonce()
	s.serverFirst = "r=" + s.fullNonce + ",s=" + base64.StdEncoding.EncodeToString(keys.Salt) +
		",i=" + strconv.Itoa(keys.Iterations)
	return []byte(s.serverFirst), nil
}

// final handles the client-final-message and returns the
// server-final-message.
func (s *scramServer) final(msg []byte) ([]byte, error) {
	if err := checkMessage(msg, "client-final-message"); err != nil {
		return nil, err
	}
	// The proof comes last (RFC 5802 §7) and is not part of AuthMessage.
	withoutProof, proof64, ok := cutLast(string(msg), ",p=")
	if !ok {
		return nil, scramErr("client-final-message has no proof (p=)")
	}
	attrs, err := parseAttrs(withoutProof, "client-final-message")
	if err != nil {
		return nil, err
	}
	if len(attrs) < 2 || attrs[0].name != 'c' || attrs[1].name != 'r' {
		return nil, scramErr("client-final-message must start with c= and r=")
	}
	b64 := base64.StdEncoding.Strict()
	cbind, err := b64.DecodeString(attrs[0].value)
	if err != nil {
		return nil, scramErr("channel binding (c=) is not valid base64")
	}
	if string(cbind) != s.gs2Header {
		return nil, scramErr("channel binding (c=) does not match the gs2 header")
	}
	if attrs[1].value != s.fullNonce {
		return nil, scramErr("nonce (r=) does not match")
	}
	proof, err := b64.DecodeString(proof64)
	if err != nil {
		return nil, scramErr("proof (p=) is not valid base64")
	}
	if len(proof) != sha256.Size {
		return nil, scramErr("proof (p=) has the wrong length")
	}
	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + withoutProof
	// ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and
	// StoredKey must be H(ClientKey) (RFC 5802 §3).
	clientKey := mac(s.keys.StoredKey, authMessage)
	subtle.XORBytes(clientKey, clientKey, proof)
	stored := sha256.Sum256(clientKey)
	ok = subtle.ConstantTimeCompare(stored[:], s.keys.StoredKey) == 1
	// Nothing derived from ServerKey goes out unless the proof matched:
	// a ServerSignature would let a client test password guesses offline.
	if err := s.login.Verify(ok); err != nil {
		return nil, err
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(mac(s.keys.ServerKey, authMessage))), nil
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func scramErr(what string) error {
	return malformedError(SCRAMSHA256 + ": " + what)
}

// checkMessage bounds a client message and checks it is UTF-8 without
// NUL (RFC 5802 §7: value-char).
func checkMessage(msg []byte, what string) error {
	switch {
	case len(msg) == 0:
		return scramErr("empty " + what)
	case len(msg) > maxSCRAMMessage:
		return scramErr(what + " too long")
	case !utf8.Valid(msg) || strings.IndexByte(string(msg), 0) >= 0:
		return scramErr(what + " is not UTF-8 text")
	}
	return nil
}

// attr is one "x=value" of a SCRAM message.
type attr struct {
	name  byte
	value string
}

// parseAttrs splits a comma-separated list of attributes, each a letter,
// "=" and a value (RFC 5802 §7: attr-val).
func parseAttrs(s, what string) ([]attr, error) {
	var out []attr
	for f := range strings.SplitSeq(s, ",") {
		if len(f) < 2 || f[1] != '=' || !isAlpha(f[0]) {
			return nil, scramErr("bad attribute in " + what)
		}
		out = append(out, attr{f[0], f[2:]})
	}
	return out, nil
}

func isAlpha(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

// printable reports whether s is all printable ASCII but ",", the nonce
// alphabet (RFC 5802 §7).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// saslName decodes a saslname (RFC 5802 §5.1): "=2C" is ",", "=3D" is
// "=", and any other "=" is an error.
func saslName(v string) (string, error) {
	if !strings.Contains(v, "=") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '=' {
			b.WriteByte(v[i])
			continue
		}
		switch esc := v[i+1 : min(i+3, len(v))]; {
		case strings.EqualFold(esc, "2C"):
			b.WriteByte(',')
		case strings.EqualFold(esc, "3D"):
			b.WriteByte('=')
		default:
			return "", scramErr("bad \"=\" escape in a username")
		}
		i += 2
	}
	return b.String(), nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
