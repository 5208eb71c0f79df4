package accounts

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Length limits in octets. RFC 5321 §4.5.3.1.1 (local part 64),
// §4.5.3.1.2 (domain 255, which is 253 in text form without the trailing
// dot, RFC 1035 §2.3.4 labels 63) and the 254-octet path of
// §4.5.3.1.3 less its angle brackets (RFC 5321 erratum 1690).
const (
	maxLocalLen   = 64
	maxLabelLen   = 63
	maxDomainLen  = 253
	maxAddressLen = 254
	// maxInputLen bounds the text worked on at all. A U-label domain can
	// be longer in UTF-8 than in its A-label form, so this is looser than
	// maxAddressLen; it only stops absurd input early.
	maxInputLen = 1024
)

// domainProfile is IDNA2008 registration checking (RFC 5891 §4): no
// mapping, only valid code points, hyphen and joiner rules, the Bidi rule
// (RFC 5893) and STD3 ASCII (letters, digits, hyphen). Lengths and empty
// labels are checked by NormalizeDomain itself to say which rule failed.
var domainProfile = idna.New(idna.ValidateForRegistration(), idna.VerifyDNSLength(false))

// NormalizeDomain returns the canonical form of a domain name: lower-case
// A-labels (bücher.example → xn--bcher-kva.example), without a trailing
// dot. Upper case, NFC-equivalent spellings and A-labels in any case are
// accepted; IP literals, all-numeric top-level labels, empty or over-long
// labels and invalid IDNs are refused with an error wrapping
// ErrInvalidAddress.
func NormalizeDomain(s string) (string, error) {
	d, err := normalizeDomain(s)
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %s", ErrInvalidAddress, truncate(s), err)
	}
	return d, nil
}

func normalizeDomain(s string) (string, error) {
	switch {
	case s == "":
		return "", fmt.Errorf("empty")
	case len(s) > maxInputLen:
		return "", fmt.Errorf("too long")
	case !utf8.ValidString(s):
		return "", fmt.Errorf("not valid UTF-8")
	case strings.HasPrefix(s, "["):
		return "", fmt.Errorf("address literals are not accepted")
	}
	s = strings.TrimSuffix(s, ".")
	if _, err := netip.ParseAddr(s); err == nil {
		return "", fmt.Errorf("IP addresses are not accepted")
	}
	// Registration-strict IDNA does no case mapping; lower-casing and NFC
	// first accept what users type (Bücher.Example, decomposed ü) while
	// everything else that UTS #46 would map is refused.
	s = norm.NFC.String(strings.ToLower(s))
	for l := range strings.SplitSeq(s, ".") {
		if l == "" {
			return "", fmt.Errorf("empty label")
		}
	}
	a, err := domainProfile.ToASCII(s)
	if err != nil {
		return "", fmt.Errorf("not a valid domain name (%v)", err)
	}
	if len(a) > maxDomainLen {
		return "", fmt.Errorf("longer than %d octets", maxDomainLen)
	}
	labels := strings.Split(a, ".")
	for _, l := range labels {
		if len(l) > maxLabelLen {
			return "", fmt.Errorf("label %q longer than %d octets", truncate(l), maxLabelLen)
		}
	}
	// A numeric top-level label is never a registered name and makes
	// "127.1" or "1.2.3" read as IPv4 to some resolvers (RFC 3696 §2).
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", fmt.Errorf("top-level label is numeric")
	}
	return a, nil
}

// NormalizeAddress returns the canonical form of an address: the local
// part NFC-normalised and lower-cased (Tern treats local parts
// case-insensitively), the domain as NormalizeDomain gives it. UTF-8 local
// parts (RFC 6531) are accepted; quoted local parts, control characters,
// spaces and the specials of RFC 5322 §3.2.3 are refused. Errors wrap
// ErrInvalidAddress.
func NormalizeAddress(s string) (string, error) {
	local, domain, err := SplitAddress(s)
	if err != nil {
		return "", err
	}
	return local + "@" + domain, nil
}

// SplitAddress normalises s like NormalizeAddress and returns its local
// part and domain.
func SplitAddress(s string) (local, domain string, err error) {
	fail := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("%w: %q: %s", ErrInvalidAddress, truncate(s), why)
	}
	if len(s) > maxInputLen {
		return fail("too long")
	}
	if !utf8.ValidString(s) {
		return fail("not valid UTF-8")
	}
	if strings.HasPrefix(s, `"`) {
		return fail("quoted local parts are not supported")
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return fail("missing @")
	}
	local, why := normalizeLocal(s[:i])
	if why != "" {
		return fail(why)
	}
	domain, err = NormalizeDomain(s[i+1:])
	if err != nil {
		return "", "", err // already says domain and why
	}
	if n := len(local) + 1 + len(domain); n > maxAddressLen {
		return fail(fmt.Sprintf("longer than %d octets", maxAddressLen))
	}
	return local, domain, nil
}

// normalizeLocal checks a dot-atom local part (RFC 5321 §4.1.2 Dot-string,
// with RFC 6531 §3.3's UTF-8 extension) and returns it normalised, or why
// it is refused.
func normalizeLocal(l string) (string, string) {
	if l == "" {
		return "", "empty local part"
	}
	l = norm.NFC.String(strings.ToLower(l))
	if len(l) > maxLocalLen {
		return "", fmt.Sprintf("local part longer than %d octets", maxLocalLen)
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return "", "local part has a leading, trailing or double dot"
	}
	for _, r := range l {
		if !localRune(r) {
			switch {
			case r == '"':
				return "", "quoted local parts are not supported"
			case unicode.IsSpace(r):
				return "", "space in local part"
			case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
				return "", "control character in local part"
			default:
				return "", fmt.Sprintf("character %q not allowed in local part", r)
			}
		}
	}
	return l, ""
}

// localRune reports whether r may appear in a dot-atom local part: atext
// of RFC 5322 §3.2.3, the dot, and non-ASCII letters, marks, numbers,
// punctuation and symbols (RFC 6531 UTF8-non-ascii, less the invisible
// and format characters that would let two addresses look alike, such as
// bidi overrides).
func localRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S)
}

// StripTag removes a plus-addressing tag from a local part: "user+tag"
// becomes "user". A local part without a tag, or one that starts with
// "+", is returned as is.
func StripTag(local string) string {
	if i := strings.IndexByte(local, '+'); i > 0 {
		return local[:i]
	}
	return local
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
