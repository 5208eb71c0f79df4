package msginfo

import (
	"bytes"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// wordDecoder decodes RFC 2047 encoded-words in any charset go-message
// knows. It holds no state between calls.
var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// decodeText decodes the encoded-words of s and returns valid UTF-8. A
// word that does not decode is kept as written.
func decodeText(s string) string {
	if strings.Contains(s, "=?") {
		if d, err := wordDecoder.DecodeHeader(s); err == nil {
			s = d
		}
	}
	return validUTF8(s)
}

// validUTF8 returns s unchanged when it is UTF-8, or else reads it as
// ISO-8859-1: raw 8-bit header text is most often Latin-1, and this way no
// byte is lost.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// toUTF8 converts b from the named charset to UTF-8. Unknown charsets and
// undecodable input fall back to validUTF8; a decoding error keeps what was
// decoded before it.
func toUTF8(cs string, b []byte) string {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		return validUTF8(string(b))
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return validUTF8(string(b))
	}
	out, err := io.ReadAll(r)
	if err != nil && len(out) == 0 {
		return validUTF8(string(b))
	}
	return validUTF8(string(out))
}
