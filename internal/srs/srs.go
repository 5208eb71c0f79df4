// Package srs rewrites the envelope sender of forwarded mail with the
// Sender Rewriting Scheme, so that a message an alias forwards passes
// SPF (RFC 7208 §1.2, appendix D) at its destination: the relayed copy
// comes from our domain, and its bounces come back to us.
//
// Addresses follow the SRS0 form of the common scheme (Shevek's paper,
// libsrs2, Mail::SRS):
//
//	SRS0=HHHHHH=TT=orig-domain=orig-local@forwarding-domain
//
// TT is the day of issue, days since the Unix epoch modulo 1024 in two
// base32 characters; HHHHHH an HMAC-SHA256 of TT, the domain and the
// local part under a secret key, truncated. Only we verify the hash, so
// its form is ours to choose: base32, because mail systems (Tern
// included) treat local parts as case-insensitive, and six characters
// (30 bits) rather than the usual four, since case-insensitive base64
// would leave less than 24 bits against guessing.
//
// An SRS0 sender from another forwarder is wrapped again as SRS0 (not
// the SRS1 shortcut of the common scheme): longer, but it unwinds the
// same way, one hop at a time.
package srs

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

var (
	// ErrInvalid: not an SRS0 address, or its hash is wrong.
	ErrInvalid = errors.New("srs: invalid address")
	// ErrExpired: a valid address older than Config.MaxAge.
	ErrExpired = errors.New("srs: address expired")
)

const (
	prefix  = "SRS0="
	hashLen = 6
	// tsMod is the range of the day stamp: two base32 characters.
	tsMod = 1024
	// maxAddressLen is RFC 5321 §4.5.3.1.3's path less its brackets
	// (erratum 1690).
	maxAddressLen = 254
	// minKeyLen is the shortest key accepted (128 bits).
	minKeyLen = 16
)

// The alphabet of the day stamp and the hash, RFC 4648 §6.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

var hashEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Config holds the secret and the validity of rewritten addresses.
type Config struct {
	Key []byte // at least 16 bytes, kept secret and stable (see LoadKey)
	// MaxAge is how long a rewritten address accepts bounces; zero
	// means 21 days. It must stay under 1024 days.
	MaxAge time.Duration
	Now    func() time.Time // nil means time.Now
}

// Rewriter is safe for concurrent use.
type Rewriter struct {
	key     []byte
	maxDays int
	now     func() time.Time
}

// New returns a Rewriter for cfg.
func New(cfg Config) (*Rewriter, error) {
	if len(cfg.Key) < minKeyLen {
		return nil, fmt.Errorf("srs: key of %d bytes, want at least %d", len(cfg.Key), minKeyLen)
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 21 * 24 * time.Hour
	}
	days := int(cfg.MaxAge / (24 * time.Hour))
	if days < 1 || days >= tsMod {
		return nil, fmt.Errorf("srs: max age %s out of range", cfg.MaxAge)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Rewriter{key: append([]byte(nil), cfg.Key...), maxDays: days, now: cfg.Now}, nil
}

// IsSRS reports whether local looks like an SRS0 local part (it may
// still be invalid).
func IsSRS(local string) bool {
	return len(local) > len(prefix) && strings.EqualFold(local[:len(prefix)], prefix)
}

// Forward returns the SRS0 address standing for sender (local@domain)
// in domain, the forwarding domain. It fails when sender has no @ or the
// result would be longer than an SMTP path allows.
func (r *Rewriter) Forward(sender, domain string) (string, error) {
	at := strings.LastIndexByte(sender, '@')
	if at <= 0 || at == len(sender)-1 {
		return "", fmt.Errorf("srs: cannot rewrite %q", sender)
	}
	local, origDomain := sender[:at], sender[at+1:]
	ts := stamp(r.day())
	out := prefix + r.hash(ts, origDomain, local) + "=" + ts + "=" + origDomain + "=" + local + "@" + domain
	if len(out) > maxAddressLen {
		return "", fmt.Errorf("srs: rewriting %q gives an address longer than %d octets", sender, maxAddressLen)
	}
	return out, nil
}

// Reverse returns the original sender of an SRS0 local part made by
// Forward: ErrInvalid when it is malformed or its hash is wrong,
// ErrExpired when it is older than the maximum age.
func (r *Rewriter) Reverse(local string) (string, error) {
	if !IsSRS(local) {
		return "", ErrInvalid
	}
	// hash, stamp, domain, then the original local part, which may
	// itself contain "=".
	parts := strings.SplitN(local[len(prefix):], "=", 4)
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
		return "", ErrInvalid
	}
	h, ts, domain, orig := parts[0], parts[1], parts[2], parts[3]
	want := r.hash(ts, domain, orig)
	if !hmac.Equal([]byte(strings.ToUpper(h)), []byte(want)) {
		return "", ErrInvalid
	}
	day, ok := unstamp(ts)
	if !ok {
		return "", ErrInvalid
	}
	// Days since issue, modulo the stamp's range: a stamp from "the
	// future" counts as very old.
	if age := (r.day() - day + tsMod) % tsMod; age > r.maxDays {
		return "", ErrExpired
	}
	return orig + "@" + domain, nil
}

func (r *Rewriter) day() int {
	return int(r.now().Unix()/86400) % tsMod
}

// hash is the truncated HMAC of the stamp, domain and local part,
// lower-cased so that any change of case in transit still verifies.
func (r *Rewriter) hash(ts, domain, local string) string {
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(strings.ToLower(ts + "=" + domain + "=" + local)))
	return hashEncoding.EncodeToString(m.Sum(nil))[:hashLen]
}

func stamp(day int) string {
	return string([]byte{alphabet[day>>5&31], alphabet[day&31]})
}

func unstamp(ts string) (int, bool) {
	if len(ts) != 2 {
		return 0, false
	}
	hi := strings.IndexByte(alphabet, upper(ts[0]))
	lo := strings.IndexByte(alphabet, upper(ts[1]))
	if hi < 0 || lo < 0 {
		return 0, false
	}
	return hi<<5 | lo, true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// LoadKey returns the key kept in path, creating it (32 random bytes,
// hex, mode 0600) when the file does not exist. The key must survive
// restarts: a new one invalidates every address already handed out, and
// bounces to them would be refused.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("srs key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < minKeyLen {
		// Never replace it silently: see above.
		return nil, fmt.Errorf("srs key %s: not %d or more hex-encoded bytes", path, minKeyLen)
	}
	return key, nil
}

// createKey writes a new key durably: a temporary file, synced, renamed
// into place, the directory synced.
func createKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	rand.Read(key)
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".srs.key-*")
	if err != nil {
		return nil, fmt.Errorf("srs key: %w", err)
	}
	defer os.Remove(f.Name()) // after a successful rename, nothing there
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// CreateTemp makes the file 0600 already; say so anyway.
		err = os.Chmod(f.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("srs key: %w", err)
	}
	return key, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
