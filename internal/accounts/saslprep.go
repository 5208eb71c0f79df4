package accounts

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/bidi"
	"golang.org/x/text/unicode/norm"
)

// ErrSASLprep is returned by SASLprep for a string RFC 4013 prohibits.
var ErrSASLprep = errors.New("SASLprep: prohibited string")

// SASLprep prepares a SCRAM username or password as RFC 4013 asks, the
// stringprep profile (RFC 3454) for SASL: non-ASCII spaces become ASCII
// spaces (C.1.2), characters "commonly mapped to nothing" go (B.1), the
// result is NFKC-normalised, and invalid UTF-8, prohibited characters
// (C.2–C.9) and strings breaking the bidi rule (RFC 3454 §6) are refused.
//
// Unassigned code points are let through, as RFC 4013 §2.5 allows for
// queries: Go's Unicode tables are far newer than stringprep's 3.2, so
// "unassigned" would not mean what it means to clients anyway.
func SASLprep(s string) (string, error) {
	if isPlainASCII(s) {
		return s, nil // the common case, unchanged by every step
	}
	if !utf8.ValidString(s) {
		return "", errors.New("SASLprep: invalid UTF-8")
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.Is(mappedToNothing, r):
		case unicode.Is(nonASCIISpace, r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	out := norm.NFKC.String(b.String())
	var randAL, l bool
	for _, r := range out {
		if unicode.Is(prohibited, r) || unicode.Is(nonASCIISpace, r) {
			return "", ErrSASLprep
		}
		p, _ := bidi.LookupRune(r)
		switch p.Class() {
		case bidi.R, bidi.AL:
			randAL = true
		case bidi.L:
			l = true
		}
	}
	if randAL {
		first, _ := utf8.DecodeRuneInString(out)
		last, _ := utf8.DecodeLastRuneInString(out)
		if l || !isRandAL(first) || !isRandAL(last) {
			return "", ErrSASLprep
		}
	}
	return out, nil
}

// isPlainASCII reports whether s is printable ASCII only.
func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func isRandAL(r rune) bool {
	p, _ := bidi.LookupRune(r)
	return p.Class() == bidi.R || p.Class() == bidi.AL
}

// mappedToNothing is RFC 3454 table B.1.
var mappedToNothing = &unicode.RangeTable{R16: []unicode.Range16{
	{0x00ad, 0x00ad, 1}, {0x034f, 0x034f, 1}, {0x1806, 0x1806, 1},
	{0x180b, 0x180d, 1}, {0x200b, 0x200d, 1}, {0x2060, 0x2060, 1},
	{0xfe00, 0xfe0f, 1}, {0xfeff, 0xfeff, 1},
}}

// nonASCIISpace is RFC 3454 table C.1.2.
var nonASCIISpace = &unicode.RangeTable{R16: []unicode.Range16{
	{0x00a0, 0x00a0, 1}, {0x1680, 0x1680, 1}, {0x2000, 0x200b, 1},
	{0x202f, 0x202f, 1}, {0x205f, 0x205f, 1}, {0x3000, 0x3000, 1},
}}

// prohibited is RFC 3454 tables C.2.1 (ASCII controls), C.2.2 (other
// controls), C.3 (private use), C.4 (non-characters), C.5 (surrogates),
// C.6 (inappropriate for plain text), C.7 (inappropriate for canonical
// representation), C.8 (display-changing and deprecated) and C.9
// (tagging), merged and sorted.
var prohibited = &unicode.RangeTable{
	R16: []unicode.Range16{
		{0x0000, 0x001f, 1}, {0x007f, 0x009f, 1}, {0x0340, 0x0341, 1},
		{0x06dd, 0x06dd, 1}, {0x070f, 0x070f, 1}, {0x180e, 0x180e, 1},
		{0x200c, 0x200f, 1}, {0x2028, 0x202e, 1}, {0x2060, 0x2063, 1},
		{0x206a, 0x206f, 1}, {0x2ff0, 0x2ffb, 1}, {0xd800, 0xf8ff, 1},
		{0xfdd0, 0xfdef, 1}, {0xfeff, 0xfeff, 1}, {0xfff9, 0xffff, 1},
	},
	R32: []unicode.Range32{
		{0x1d173, 0x1d17a, 1}, {0x1fffe, 0x1ffff, 1}, {0x2fffe, 0x2ffff, 1},
		{0x3fffe, 0x3ffff, 1}, {0x4fffe, 0x4ffff, 1}, {0x5fffe, 0x5ffff, 1},
		{0x6fffe, 0x6ffff, 1}, {0x7fffe, 0x7ffff, 1}, {0x8fffe, 0x8ffff, 1},
		{0x9fffe, 0x9ffff, 1}, {0xafffe, 0xaffff, 1}, {0xbfffe, 0xbffff, 1},
		{0xcfffe, 0xcffff, 1}, {0xdfffe, 0xdffff, 1}, {0xe0001, 0xe0001, 1},
		{0xe0020, 0xe007f, 1}, {0xefffe, 0xeffff, 1}, {0xf0000, 0x10ffff, 1},
	},
}
