package imapd

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// quote returns s as an IMAP string: quoted when it can be, a literal
// otherwise (CR, LF, NUL, long strings, and 8-bit text for clients that did
// not enable UTF-8).
func quote(s string, utf8OK bool) string {
	if len(s) > 1000 || !quotable(s, utf8OK) {
		return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
	}
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func quotable(s string, utf8OK bool) bool {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == 0 || b == '\r' || b == '\n':
			return false
		case b >= 0x80 && (!utf8OK || !utf8.ValidString(s)):
			return false
		}
	}
	return true
}

// nstring is quote, with NIL for the empty string.
func nstring(s string, utf8OK bool) string {
	if s == "" {
		return "NIL"
	}
	return quote(s, utf8OK)
}

// astring writes s as an atom when it is one, else quoted or literal.
func astring(s string, utf8OK bool) string {
	if s == "" || strings.EqualFold(s, "NIL") {
		return quote(s, utf8OK)
	}
	for i := 0; i < len(s); i++ {
		if !isAtomChar(s[i]) {
			return quote(s, utf8OK)
		}
	}
	return s
}

func flagList(flags []string) string {
	return "(" + strings.Join(flags, " ") + ")"
}

// uidSetString writes ascending UIDs as a compact sequence set.
func uidSetString(uids []uint32) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(uids[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(uids[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

func uitoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
