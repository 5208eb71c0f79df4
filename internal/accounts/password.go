package accounts

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new hashes: t=1, 64 MiB, p=4 is RFC 9106 §4's
// second recommended option and costs ≈160 ms on the reference machine.
// Stored hashes carry their own parameters, so these can be raised later
// without invalidating existing passwords.
const (
	argonTime    = 1
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
	argonKeyLen  = 32
	argonSaltLen = 16
)

// MaxPasswordLen bounds passwords in octets. Longer ones are refused when
// set and never verified, so a client cannot make the server hash
// megabytes.
const MaxPasswordLen = 1024

// dummyHash is HashPassword of a random password thrown away, with the same
// parameters as new hashes, so that verifying against it costs what a real
// verification costs.
const dummyHash = "$argon2id$v=19$m=65536,t=1,p=4$9Z8j7IbIUO+NU6mTNWaMVw$oOHsGX7iejZe7lCMekBUWXfDcdshXih+V4qXfXP/DFI"

// DummyHash returns a valid hash that no password matches in practice.
// Verify against it when the user is unknown, so an unknown user takes as
// long as a wrong password.
func DummyHash() string { return dummyHash }

// checkPassword reports why a new password is refused, or nil.
func checkPassword(pw string) error {
	switch {
	case pw == "":
		return fmt.Errorf("%w: empty", ErrInvalidPassword)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidPassword, MaxPasswordLen)
	}
	return nil
}

// HashPassword returns the argon2id PHC string of pw with a fresh random
// salt: $argon2id$v=19$m=65536,t=1,p=4$<salt>$<hash>, salt and hash in
// unpadded standard base64 (the PHC string format).
func HashPassword(pw string) (string, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	p := argonParams{time: argonTime, memory: argonMemory, threads: argonThreads}
	return p.format(salt, argon2IDKey(pw, salt, p, argonKeyLen)), nil
}

// VerifyPassword reports whether pw matches hash, a PHC string made by
// HashPassword (its parameters are read from the string). The comparison
// is constant-time. A malformed hash, an empty password or one longer
// than MaxPasswordLen never matches.
func VerifyPassword(hash, pw string) bool {
	if pw == "" || len(pw) > MaxPasswordLen {
		return false
	}
	p, salt, key, err := parseHash(hash)
	if err != nil {
		return false
	}
	got := argon2IDKey(pw, salt, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

type argonParams struct {
	time, memory uint32
	threads      uint8
}

func argon2IDKey(pw string, salt []byte, p argonParams, keyLen uint32) []byte {
	return argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, keyLen)
}

func (p argonParams) format(salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Bounds on parameters read from a stored hash, so a corrupt or hostile
// row cannot make one verification take gigabytes or minutes.
const (
	maxArgonMemory = 1 << 20 // KiB, 1 GiB
	maxArgonTime   = 16
	minArgonSalt   = 8
	minArgonKey    = 16
	maxArgonKey    = 64
)

// parseHash splits a PHC argon2id string into its parts.
func parseHash(hash string) (p argonParams, salt, key []byte, err error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("not an argon2id PHC string")
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("unsupported argon2 version %q", f[2])
	}
	var seen [3]bool
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, fmt.Errorf("bad parameter %q", kv)
		}
		switch k {
		case "m":
			p.memory, seen[0] = uint32(n), true
		case "t":
			p.time, seen[1] = uint32(n), true
		case "p":
			if n > 255 {
				return p, nil, nil, fmt.Errorf("bad parameter %q", kv)
			}
			p.threads, seen[2] = uint8(n), true
		default:
			return p, nil, nil, fmt.Errorf("unknown parameter %q", kv)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return p, nil, nil, fmt.Errorf("missing parameter in %q", f[3])
	}
	if p.time < 1 || p.time > maxArgonTime || p.threads < 1 ||
		p.memory < 8*uint32(p.threads) || p.memory > maxArgonMemory {
		return p, nil, nil, fmt.Errorf("parameters out of range: %q", f[3])
	}
	b64 := base64.RawStdEncoding.Strict()
	if salt, err = b64.DecodeString(f[4]); err != nil || len(salt) < minArgonSalt {
		return p, nil, nil, fmt.Errorf("bad salt")
	}
	if key, err = b64.DecodeString(f[5]); err != nil || len(key) < minArgonKey || len(key) > maxArgonKey {
		return p, nil, nil, fmt.Errorf("bad hash")
	}
	return p, salt, key, nil
}
