package accounts

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 keys (RFC 5802 §3, RFC 7677) are what the server keeps to
// check a SCRAM login without knowing the password: the salt, the
// iteration count, StoredKey and ServerKey. They are derived with the
// argon2id hash whenever a password is set; the password and the
// SaltedPassword are never kept.

// SCRAMIterations is the PBKDF2 iteration count of new keys: RFC 7677
// §4's minimum, and the default of PostgreSQL and Dovecot, whose clients
// are used to it. The client pays it at every login (the server never
// does: it only compares HMACs), so a higher count would slow phones
// down on every connection. Keys carry their own count, so it can be
// raised later; accounts then get new keys with their next password.
//
// Whoever reads the stored keys can guess passwords offline at PBKDF2
// speed, far faster than against the argon2id hash: offering SCRAM
// trades some of that protection for never sending the password.
const SCRAMIterations = 4096

// SCRAMSaltLen is the length of new keys' salts in bytes.
const SCRAMSaltLen = 16

const (
	// Bounds on keys read from the store, so a corrupt or hostile row
	// cannot make clients iterate forever.
	maxSCRAMIterations = 10_000_000
	minSCRAMSalt       = 8
	maxSCRAMSalt       = 64
	scramPrefix        = "SCRAM-SHA-256$"
)

// SCRAMKeys are one account's SCRAM-SHA-256 keys.
type SCRAMKeys struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte // H(ClientKey), sha256.Size bytes
	ServerKey  []byte // HMAC(SaltedPassword, "Server Key"), sha256.Size bytes
}

// NewSCRAMKeys derives keys for pw with a fresh random salt and
// SCRAMIterations. Passwords HashPassword refuses are refused too.
func NewSCRAMKeys(pw string) (SCRAMKeys, error) {
	if err := checkPassword(pw); err != nil {
		return SCRAMKeys{}, err
	}
	salt := make([]byte, SCRAMSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return SCRAMKeys{}, fmt.Errorf("scram keys: %w", err)
	}
	return DeriveSCRAMKeys(pw, salt, SCRAMIterations)
}

// DeriveSCRAMKeys computes the keys of pw (RFC 5802 §3):
//
//	SaltedPassword = Hi(Normalize(pw), salt, iterations)  (PBKDF2-HMAC-SHA-256)
//	StoredKey      = H(HMAC(SaltedPassword, "Client Key"))
//	ServerKey      = HMAC(SaltedPassword, "Server Key")
//
// Normalize is SASLprep; a password SASLprep refuses is used as it is,
// as PostgreSQL does, since a client that cannot prepare it sends it
// unchanged.
func DeriveSCRAMKeys(pw string, salt []byte, iterations int) (SCRAMKeys, error) {
	if p, err := SASLprep(pw); err == nil {
		pw = p
	}
	salted, err := pbkdf2.Key(sha256.New, pw, salt, iterations, sha256.Size)
	if err != nil {
		return SCRAMKeys{}, fmt.Errorf("scram keys: %w", err)
	}
	stored := sha256.Sum256(scramHMAC(salted, "Client Key"))
	return SCRAMKeys{
		Salt:       salt,
		Iterations: iterations,
		StoredKey:  stored[:],
		ServerKey:  scramHMAC(salted, "Server Key"),
	}, nil
}

func scramHMAC(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// String encodes k as RFC 5803 §3 does (and PostgreSQL stores it):
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", each
// binary value in padded standard base64. This is store.Account.SCRAM.
func (k SCRAMKeys) String() string {
	b64 := base64.StdEncoding
	return scramPrefix + strconv.Itoa(k.Iterations) + ":" + b64.EncodeToString(k.Salt) +
		"$" + b64.EncodeToString(k.StoredKey) + ":" + b64.EncodeToString(k.ServerKey)
}

// errSCRAMKeys is the one error of ParseSCRAMKeys: the text never holds
// key material.
var errSCRAMKeys = errors.New("not SCRAM-SHA-256 keys")

// ParseSCRAMKeys decodes what SCRAMKeys.String makes.
func ParseSCRAMKeys(s string) (SCRAMKeys, error) {
	rest, ok := strings.CutPrefix(s, scramPrefix)
	info, value, ok2 := strings.Cut(rest, "$")
	iter, salt, ok3 := strings.Cut(info, ":")
	stored, server, ok4 := strings.Cut(value, ":")
	if !ok || !ok2 || !ok3 || !ok4 {
		return SCRAMKeys{}, errSCRAMKeys
	}
	var k SCRAMKeys
	var err error
	if k.Iterations, err = strconv.Atoi(iter); err != nil || k.Iterations < SCRAMIterations || k.Iterations > maxSCRAMIterations {
		return SCRAMKeys{}, fmt.Errorf("%w: iteration count out of range", errSCRAMKeys)
	}
	b64 := base64.StdEncoding.Strict()
	if k.Salt, err = b64.DecodeString(salt); err != nil || len(k.Salt) < minSCRAMSalt || len(k.Salt) > maxSCRAMSalt {
		return SCRAMKeys{}, fmt.Errorf("%w: bad salt", errSCRAMKeys)
	}
	if k.StoredKey, err = b64.DecodeString(stored); err != nil || len(k.StoredKey) != sha256.Size {
		return SCRAMKeys{}, fmt.Errorf("%w: bad StoredKey", errSCRAMKeys)
	}
	if k.ServerKey, err = b64.DecodeString(server); err != nil || len(k.ServerKey) != sha256.Size {
		return SCRAMKeys{}, fmt.Errorf("%w: bad ServerKey", errSCRAMKeys)
	}
	return k, nil
}
