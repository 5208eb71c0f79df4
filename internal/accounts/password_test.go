package accounts

import (
	"errors"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=1,p=4$") {
		t.Fatalf("hash %q does not carry the expected parameters", h)
	}
	_, salt, key, err := parseHash(h)
	if err != nil || len(salt) != 16 || len(key) != 32 {
		t.Fatalf("parseHash(%q): salt %d bytes, key %d bytes, %v", h, len(salt), len(key), err)
	}
	if !VerifyPassword(h, "correct horse") {
		t.Error("right password refused")
	}
	for _, wrong := range []string{"correct horsE", "correct horse ", "", "correct"} {
		if VerifyPassword(h, wrong) {
			t.Errorf("wrong password %q accepted", wrong)
		}
	}
	h2, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestHashPasswordLimits(t *testing.T) {
	for _, pw := range []string{"", strings.Repeat("x", MaxPasswordLen+1)} {
		_, err := HashPassword(pw)
		if !errors.Is(err, ErrInvalidPassword) || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("HashPassword(%d bytes) error = %v, want ErrInvalidPassword", len(pw), err)
		}
	}
	max := strings.Repeat("x", MaxPasswordLen)
	h, err := HashPassword(max)
	if err != nil || !VerifyPassword(h, max) {
		t.Fatalf("password of exactly %d bytes: %v", MaxPasswordLen, err)
	}
	// A longer password sharing the prefix is never even hashed.
	if VerifyPassword(h, max+"x") {
		t.Fatal("over-long password accepted")
	}
}

// TestVerifyPasswordParams checks that parameters come from the string:
// a hash made with other parameters still verifies.
func TestVerifyPasswordParams(t *testing.T) {
	p := argonParams{time: 2, memory: 1024, threads: 1}
	salt := []byte("0123456789abcdef")
	h := p.format(salt, argon2IDKey("pw", salt, p, 32))
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=2,p=1$") {
		t.Fatalf("format gave %q", h)
	}
	if !VerifyPassword(h, "pw") {
		t.Fatal("hash with other parameters refused")
	}
	if VerifyPassword(h, "pW") {
		t.Fatal("wrong password accepted")
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	good, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(good, "$")
	join := func(parts ...string) string { return strings.Join(parts, "$") }
	bad := []string{
		"",
		"pw",
		"$argon2i$" + strings.Join(f[2:], "$"),
		join("", "argon2id", "v=16", f[3], f[4], f[5]),
		join("", "argon2id", f[2], "m=65536,t=1", f[4], f[5]),
		join("", "argon2id", f[2], "m=65536,t=1,p=4,x=1", f[4], f[5]),
		join("", "argon2id", f[2], "m=65536,t=0,p=4", f[4], f[5]),
		join("", "argon2id", f[2], "m=65536,t=1,p=0", f[4], f[5]),
		join("", "argon2id", f[2], "m=4294967295,t=1,p=4", f[4], f[5]), // 4 TiB
		join("", "argon2id", f[2], "m=65536,t=1000000,p=4", f[4], f[5]),
		join("", "argon2id", f[2], "m=65536,t=1,p=256", f[4], f[5]),
		join("", "argon2id", f[2], "m=65536,t=-1,p=4", f[4], f[5]),
		join("", "argon2id", f[2], f[3], "c2FsdA", f[5]), // 4-byte salt
		join("", "argon2id", f[2], f[3], f[4], "aGFzaA"), // 4-byte hash
		join("", "argon2id", f[2], f[3], f[4]+"=", f[5]),
		join("", "argon2id", f[2], f[3], f[4], f[5], ""),
	}
	for _, h := range bad {
		if VerifyPassword(h, "pw") {
			t.Errorf("malformed hash %q accepted", h)
		}
	}
}

func TestDummyHash(t *testing.T) {
	p, _, key, err := parseHash(DummyHash())
	if err != nil {
		t.Fatalf("DummyHash() does not parse: %v", err)
	}
	// Same cost as a real hash, or unknown users would answer faster.
	want := argonParams{time: argonTime, memory: argonMemory, threads: argonThreads}
	if p != want || len(key) != argonKeyLen {
		t.Fatalf("DummyHash() parameters %+v, key %d bytes; want %+v, %d", p, len(key), want, argonKeyLen)
	}
	if VerifyPassword(DummyHash(), "password") {
		t.Fatal("DummyHash() matched a guessable password")
	}
}

// FuzzVerifyPassword feeds arbitrary hash strings: no panic, and nothing
// verifies that was not made with the password. Memory and time bounds
// keep each run small.
func FuzzVerifyPassword(f *testing.F) {
	f.Add("$argon2id$v=19$m=8,t=1,p=1$MDEyMzQ1Njc$MDEyMzQ1Njc4OWFiY2RlZg")
	f.Add(DummyHash())
	f.Add("$argon2id$v=19$m=65536,t=1,p=4$$")
	f.Fuzz(func(t *testing.T, h string) {
		p, _, _, err := parseHash(h)
		if err != nil {
			return
		}
		if p.memory > maxArgonMemory || p.time > maxArgonTime || p.threads == 0 {
			t.Fatalf("parseHash(%q) accepted out-of-range %+v", h, p)
		}
	})
}
