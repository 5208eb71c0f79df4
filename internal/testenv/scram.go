package testenv

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SCRAMClient is the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677),
// which go-sasl lacks, written apart from Tern's server so that a test
// catches a mistake in either. It implements go-sasl's Client (so
// go-smtp's and go-imap's clients can use it) and checks the server's
// signature. Passwords are taken as they are, without SASLprep: keep
// them ASCII.
type SCRAMClient struct {
	User, Password string
	Authzid        string // "" for none
	Nonce          string // the client nonce; random when empty
	// Flag is the gs2 channel binding flag: "n" (the default, no
	// binding) or "y" (could bind, but thinks the server cannot).
	Flag string

	// ServerFirst is the server-first-message, once received.
	ServerFirst string

	step            int
	gs2             string
	clientFirstBare string
	serverSignature []byte
}

// Start implements sasl.Client.
func (c *SCRAMClient) Start() (mech string, ir []byte, err error) {
	if c.Nonce == "" {
		c.Nonce = rand.Text()
	}
	flag := c.Flag
	if flag == "" {
		flag = "n"
	}
	c.gs2 = flag + ",,"
	if c.Authzid != "" {
		c.gs2 = flag + ",a=" + SCRAMEscape(c.Authzid) + ","
	}
	c.clientFirstBare = "n=" + SCRAMEscape(c.User) + ",r=" + c.Nonce
	c.step = 0
	return "SCRAM-SHA-256", []byte(c.gs2 + c.clientFirstBare), nil
}

// Next implements sasl.Client: it answers the server-first-message with
// the client-final-message, then checks the server-final-message and
// answers it with an empty response.
func (c *SCRAMClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.step {
	case 1:
		return c.final(string(challenge))
	case 2:
		v, ok := strings.CutPrefix(string(challenge), "v=")
		sig, err := base64.StdEncoding.DecodeString(v)
		if !ok || err != nil || !hmac.Equal(sig, c.serverSignature) {
			return nil, fmt.Errorf("scram client: bad server-final-message %q", challenge)
		}
		return []byte{}, nil // not nil: go-smtp's client would stop
	}
	return nil, errors.New("scram client: unexpected challenge")
}

func (c *SCRAMClient) final(serverFirst string) ([]byte, error) {
	c.ServerFirst = serverFirst
	f := strings.Split(serverFirst, ",")
	if len(f) < 3 || !strings.HasPrefix(f[0], "r="+c.Nonce) || !strings.HasPrefix(f[1], "s=") || !strings.HasPrefix(f[2], "i=") {
		return nil, fmt.Errorf("scram client: bad server-first-message %q", serverFirst)
	}
	salt, err := base64.StdEncoding.DecodeString(f[1][2:])
	if err != nil {
		return nil, fmt.Errorf("scram client: salt: %w", err)
	}
	iter, err := strconv.Atoi(f[2][2:])
	if err != nil || iter < 4096 {
		return nil, fmt.Errorf("scram client: iteration count %q", f[2])
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(c.gs2)) + "," + f[0]
	authMessage := c.clientFirstBare + "," + serverFirst + "," + withoutProof
	salted, err := pbkdf2.Key(sha256.New, c.Password, salt, iter, sha256.Size)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	proof := hmacSHA256(storedKey[:], authMessage)
	subtle.XORBytes(proof, proof, clientKey)
	c.serverSignature = hmacSHA256(hmacSHA256(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// SCRAMEscape writes a username as a saslname (RFC 5802 §5.1).
func SCRAMEscape(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}
