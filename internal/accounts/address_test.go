package accounts

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ternmail/tern/internal/store"
)

func TestNormalizeDomain(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// 4 labels of 63 + 3 dots = 255; trimmed to exactly 253.
	long253 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	tests := []struct {
		in, want string
		why      string // substring of the error, when want is ""
	}{
		{"example.org", "example.org", ""},
		{"Example.ORG", "example.org", ""},
		{"example.org.", "example.org", ""},
		{"localhost", "localhost", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"Bücher.Example", "xn--bcher-kva.example", ""},
		{"bu\u0308cher.example", "xn--bcher-kva.example", ""}, // decomposed ü
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example", ""},
		{"münchen.de.", "xn--mnchen-3ya.de", ""},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah", ""},
		{"a-b.example", "a-b.example", ""},
		{"1example.com", "1example.com", ""},
		{label63 + ".example", label63 + ".example", ""},
		{long253, long253, ""},
		{long253 + ".", long253, ""},

		{"", "", "empty"},
		{".", "", "empty label"},
		{"example..org", "", "empty label"},
		{".example.org", "", "empty label"},
		{"example.org..", "", "empty label"},
		{label63 + "a.example", "", "longer than 63"},
		{long253 + "b", "", "longer than 253"},
		{"192.0.2.1", "", "IP address"},
		{"2001:db8::1", "", "IP address"},
		{"[192.0.2.1]", "", "literal"},
		{"[IPv6:2001:db8::1]", "", "literal"},
		{"127.1", "", "numeric"},
		{"example.123", "", "numeric"},
		{"exa_mple.org", "", "not a valid domain"},
		{"exa mple.org", "", "not a valid domain"},
		{"-example.org", "", "not a valid domain"},
		{"example-.org", "", "not a valid domain"},
		{"ab--cd.example", "", "not a valid domain"},
		{"xn--zz.example", "", "not a valid domain"},   // bad punycode
		{"xn--abc-.example", "", "not a valid domain"}, // ASCII-only A-label
		{"ｅｘａｍｐｌｅ.org", "", "not a valid domain"},      // full-width: mapped, not valid
		{"example.org\x00", "", "not a valid domain"},
		{"\xff.example", "", "UTF-8"},
		{"user@example.org", "", "not a valid domain"},
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(tt.in)
		if tt.why == "" {
			if err != nil || got != tt.want {
				t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want error containing %q", tt.in, got, tt.why)
			continue
		}
		if !errors.Is(err, ErrInvalidAddress) || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("NormalizeDomain(%q) error %v does not wrap ErrInvalidAddress and store.ErrInvalid", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.why) {
			t.Errorf("NormalizeDomain(%q) error %q does not say %q", tt.in, err, tt.why)
		}
	}
}

func TestNormalizeAddress(t *testing.T) {
	local64 := strings.Repeat("l", 64)
	label63 := strings.Repeat("d", 63)
	// 64 + 1 + 189 = 254 octets.
	dom189 := label63 + "." + label63 + "." + strings.Repeat("e", 61)
	tests := []struct {
		in, want string
		why      string
	}{
		{"user@example.org", "user@example.org", ""},
		{"User@Example.ORG", "user@example.org", ""},
		{"First.Last+Tag@example.org", "first.last+tag@example.org", ""},
		{"user@bücher.example", "user@xn--bcher-kva.example", ""},
		{"Jürgen@Bücher.example", "jürgen@xn--bcher-kva.example", ""},
		{"JU\u0308RGEN@example.org", "jürgen@example.org", ""}, // NFC after lower-casing
		{"用户@例え.テスト", "用户@xn--r8jz45g.xn--zckzah", ""},
		{"ΣΟΦΙΑ@example.org", "σοφια@example.org", ""},
		{"a!#$%&'*+-/=?^_`{|}~@example.org", "a!#$%&'*+-/=?^_`{|}~@example.org", ""},
		{"user@example.org.", "user@example.org", ""},
		{local64 + "@example.org", local64 + "@example.org", ""},
		{local64 + "@" + dom189, local64 + "@" + dom189, ""},

		{"", "", "missing @"},
		{"user", "", "missing @"},
		{"@example.org", "", "empty local part"},
		{"user@", "", "empty"},
		{`"quoted"@example.org`, "", "quoted"},
		{`"a b"@example.org`, "", "quoted"},
		{`a"b@example.org`, "", "quoted"},
		{"a b@example.org", "", "space"},
		{"a\tb@example.org", "", "space"},
		{"a\u00a0b@example.org", "", "space"},
		{"a\x00b@example.org", "", "control"},
		{"a\x7fb@example.org", "", "control"},
		{"a\u202eb@example.org", "", "control"}, // bidi override
		{"a\u200bb@example.org", "", "control"}, // zero-width space
		{"a@b@example.org", "", "not allowed"},  // unquoted @ in local part
		{"a(b)@example.org", "", "not allowed"},
		{"a,b@example.org", "", "not allowed"},
		{".user@example.org", "", "dot"},
		{"user.@example.org", "", "dot"},
		{"us..er@example.org", "", "dot"},
		{local64 + "l@example.org", "", "longer than 64"},
		{strings.Repeat("ü", 33) + "@example.org", "", "longer than 64"}, // 66 octets
		{local64 + "@" + dom189 + "e", "", "longer than 254"},
		{"user@192.0.2.1", "", "IP address"},
		{"user@[192.0.2.1]", "", "literal"},
		{"user@exa_mple.org", "", "domain"},
		{"\xffuser@example.org", "", "UTF-8"},
	}
	for _, tt := range tests {
		got, err := NormalizeAddress(tt.in)
		if tt.why == "" {
			if err != nil || got != tt.want {
				t.Errorf("NormalizeAddress(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("NormalizeAddress(%q) = %q, want error containing %q", tt.in, got, tt.why)
			continue
		}
		if !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("NormalizeAddress(%q) error %v does not wrap ErrInvalidAddress", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.why) {
			t.Errorf("NormalizeAddress(%q) error %q does not say %q", tt.in, err, tt.why)
		}
	}
}

func TestSplitAddress(t *testing.T) {
	l, d, err := SplitAddress("Jürgen+Box@Bücher.Example.")
	if err != nil || l != "jürgen+box" || d != "xn--bcher-kva.example" {
		t.Fatalf("SplitAddress = %q, %q, %v", l, d, err)
	}
	if _, _, err := SplitAddress("nobody"); !errors.Is(err, ErrInvalidAddress) {
		t.Fatalf("SplitAddress(nobody) error = %v, want ErrInvalidAddress", err)
	}
}

func TestStripTag(t *testing.T) {
	tests := []struct{ in, want string }{
		{"user", "user"},
		{"user+tag", "user"},
		{"user+tag+more", "user"},
		{"user+", "user"},
		{"+tag", "+tag"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := StripTag(tt.in); got != tt.want {
			t.Errorf("StripTag(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzNormalizeAddress checks that a normalised address is stable (a
// second pass changes nothing), within the length limits, and that every
// refusal wraps ErrInvalidAddress.
func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{
		"user@example.org", "User+Tag@Bücher.Example.", `"q"@example.org`,
		"a@b@c", "用户@例え.テスト", "x@xn--bcher-kva.example", "x@[1.2.3.4]",
		"x@127.1", "a\u202eb@example.org", "ΣΟΦΙΑ@example.org",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeAddress(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidAddress) {
				t.Fatalf("NormalizeAddress(%q) error %v does not wrap ErrInvalidAddress", s, err)
			}
			return
		}
		if len(got) > maxAddressLen || !utf8.ValidString(got) {
			t.Fatalf("NormalizeAddress(%q) = %q: too long or invalid UTF-8", s, got)
		}
		again, err := NormalizeAddress(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeAddress(%q) = %q, but again gives %q, %v", s, got, again, err)
		}
		local, _, _ := SplitAddress(got)
		if len(local) > maxLocalLen {
			t.Fatalf("local part of %q longer than %d", got, maxLocalLen)
		}
	})
}
