package accounts

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// scramMatches reports whether stored (store.Account.SCRAM) holds the keys
// of pw: derived again with its salt and count, they are the same.
func scramMatches(t *testing.T, stored, pw string) bool {
	t.Helper()
	k, err := ParseSCRAMKeys(stored)
	if err != nil {
		t.Fatalf("ParseSCRAMKeys(%q): %v", stored, err)
	}
	again, err := DeriveSCRAMKeys(pw, k.Salt, k.Iterations)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(again.StoredKey, k.StoredKey) && bytes.Equal(again.ServerKey, k.ServerKey)
}

// TestSCRAMKeysRFC7677 checks the derivation against the exchange of RFC
// 7677 §3 (user "user", password "pencil"): the client's proof must give
// back a ClientKey whose hash is StoredKey, and ServerKey must sign the
// AuthMessage as the server did.
func TestSCRAMKeysRFC7677(t *testing.T) {
	const (
		clientFirstBare = "n=user,r=rOprNGfwEbeRWgbNEkqO"
		serverFirst     = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
		finalNoProof    = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
		proof           = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		serverSig       = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	)
	b64 := base64.StdEncoding
	salt, _ := b64.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	k, err := DeriveSCRAMKeys("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	authMessage := clientFirstBare + "," + serverFirst + "," + finalNoProof
	clientKey, _ := b64.DecodeString(proof)
	subtle.XORBytes(clientKey, clientKey, hmacOf(k.StoredKey, authMessage))
	if h := sha256.Sum256(clientKey); !bytes.Equal(h[:], k.StoredKey) {
		t.Errorf("StoredKey %s does not match the RFC's proof", b64.EncodeToString(k.StoredKey))
	}
	if got := b64.EncodeToString(hmacOf(k.ServerKey, authMessage)); got != serverSig {
		t.Errorf("ServerSignature %s, RFC 7677 says %s", got, serverSig)
	}
	// Another password does not give the same keys.
	if other, _ := DeriveSCRAMKeys("pencil2", salt, 4096); bytes.Equal(other.StoredKey, k.StoredKey) {
		t.Error("two passwords give one StoredKey")
	}
}

func hmacOf(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func TestSCRAMKeysEncoding(t *testing.T) {
	k, err := NewSCRAMKeys("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	s := k.String()
	// RFC 5803 §3, as PostgreSQL stores it.
	if !regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$`).MatchString(s) {
		t.Fatalf("keys encoded as %q", s)
	}
	if strings.Contains(s, "correct") {
		t.Fatal("encoded keys contain the password")
	}
	back, err := ParseSCRAMKeys(s)
	if err != nil || back.String() != s || back.Iterations != SCRAMIterations || len(back.Salt) != SCRAMSaltLen {
		t.Fatalf("ParseSCRAMKeys(%q) = %+v, %v", s, back, err)
	}
	if !scramMatches(t, s, "correct horse") || scramMatches(t, s, "correct horse ") {
		t.Fatal("keys do not match their password alone")
	}
	k2, _ := NewSCRAMKeys("correct horse")
	if bytes.Equal(k2.Salt, k.Salt) || bytes.Equal(k2.StoredKey, k.StoredKey) {
		t.Fatal("two key sets of one password are equal: salt not random")
	}

	f := strings.FieldsFunc(s, func(r rune) bool { return r == '$' || r == ':' })
	// f: SCRAM-SHA-256, 4096, salt, stored, server
	key32 := f[3]
	for _, bad := range []string{
		"",
		"x",
		"$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		"SCRAM-SHA-1$4096:" + f[2] + "$" + key32 + ":" + key32,
		"SCRAM-SHA-256$4096:" + f[2] + "$" + key32,                   // no ServerKey
		"SCRAM-SHA-256$4096$" + key32 + ":" + key32,                  // no salt
		"SCRAM-SHA-256$1024:" + f[2] + "$" + key32 + ":" + key32,     // under RFC 7677's minimum
		"SCRAM-SHA-256$99999999:" + f[2] + "$" + key32 + ":" + key32, // absurd
		"SCRAM-SHA-256$x:" + f[2] + "$" + key32 + ":" + key32,
		"SCRAM-SHA-256$4096:c2FsdA==$" + key32 + ":" + key32, // 4-byte salt
		"SCRAM-SHA-256$4096:" + f[2] + "$c2hvcnQ=:" + key32,  // short key
		"SCRAM-SHA-256$4096:" + f[2] + "$" + key32 + ":" + key32 + "x",
		"SCRAM-SHA-256$4096:" + strings.TrimRight(f[2], "=") + "$" + key32 + ":" + key32, // unpadded
	} {
		if _, err := ParseSCRAMKeys(bad); err == nil {
			t.Errorf("ParseSCRAMKeys(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), key32) {
			t.Errorf("error %q shows key material", err)
		}
	}
	for _, pw := range []string{"", strings.Repeat("x", MaxPasswordLen+1)} {
		if _, err := NewSCRAMKeys(pw); !errors.Is(err, ErrInvalidPassword) {
			t.Errorf("NewSCRAMKeys(%d bytes) = %v, want ErrInvalidPassword", len(pw), err)
		}
	}
}

func TestSASLprep(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// RFC 4013 §3.
		{"I\u00adX", "IX"},
		{"user", "user"},
		{"USER", "USER"},
		{"\u00aa", "a"},
		{"\u2168", "IX"},
		{"\u0007", ""},
		{"\u0627\u0031", ""},
		// More.
		{"pass word", "pass word"},
		{"a\u00a0b\u3000c", "a b c"},         // non-ASCII spaces
		{"a\u200bb", "ab"},                   // zero width space: mapped to nothing
		{"caf\u0065\u0301", "café"},          // NFKC composes
		{"\uff50\uff41\uff53\uff53", "pass"}, // fullwidth
		{"\u0627\u0628", "\u0627\u0628"},
		{"\u05d0a\u05d0", ""}, // RandALCat and LCat together
		{"\u05d0\u0031", ""},  // RandALCat not last
		{"\ue000", ""},        // private use
		{"a\u202eb", ""},      // display-changing
		{"\U000e0041", ""},    // tagging
		{"\ufffe", ""},        // non-character
		{"\xff", ""},          // invalid UTF-8
		{"a\x00b", ""},
		{"a\x7fb", ""},
		{"jürgen@bücher.example", "jürgen@bücher.example"},
	} {
		got, err := SASLprep(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("SASLprep(%+q) = %+q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("SASLprep(%+q) = %+q, %v; want %+q", c.in, got, err, c.want)
		}
	}
	// A password SASLprep refuses is used as it is, so it still works.
	k, err := NewSCRAMKeys("bell\u0007")
	if err != nil {
		t.Fatal(err)
	}
	if !scramMatches(t, k.String(), "bell\u0007") || scramMatches(t, k.String(), "bell") {
		t.Fatal("keys of a password SASLprep refuses")
	}
	// A password with a prepared form has the keys of that form.
	k, _ = NewSCRAMKeys("I\u00adX")
	if !scramMatches(t, k.String(), "IX") {
		t.Fatal("keys not derived from the SASLprep'd password")
	}
}
