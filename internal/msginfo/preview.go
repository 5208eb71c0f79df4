package msginfo

import (
	"encoding/base64"
	"html"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	previewRead  = 64 << 10 // bytes of the body read for the preview
	previewRunes = 256
)

// preview returns the start of the message's first text/plain part, or of
// its first text/html part stripped of markup, decoded to UTF-8 with
// whitespace collapsed. Attachments and enclosed messages are not looked
// into.
func preview(r io.ReaderAt, body *Part) (string, error) {
	pt := findText(body, "plain")
	if pt == nil {
		pt = findText(body, "html")
	}
	if pt == nil || pt.Size() == 0 {
		return "", nil
	}
	buf := make([]byte, min(pt.Size(), previewRead))
	n, err := r.ReadAt(buf, pt.BodyStart)
	if err != nil && err != io.EOF {
		return "", err
	}
	buf = buf[:n]
	switch pt.Encoding {
	case "QUOTED-PRINTABLE":
		buf = decodeQP(buf)
	case "BASE64":
		buf = decodeBase64(buf)
	}
	text := toUTF8(param(pt.Params, "charset"), buf)
	if pt.Subtype == "html" {
		text = stripHTML(text)
	}
	return collapse(text, previewRunes), nil
}

// findText returns the first inline text/subtype part in tree order.
func findText(pt *Part, subtype string) *Part {
	if pt.Disposition == "attachment" {
		return nil
	}
	if pt.Type == "text" && pt.Subtype == subtype {
		return pt
	}
	for i := range pt.Children {
		if c := findText(&pt.Children[i], subtype); c != nil {
			return c
		}
	}
	return nil
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7) leniently: malformed
// escapes are kept as written.
func decodeQP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		j := i + 1
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		switch {
		case j < len(b) && b[j] == '\n':
			i = j // soft line break
		case j+1 < len(b) && b[j] == '\r' && b[j+1] == '\n':
			i = j + 1
		case i+2 < len(b) && unhex(b[i+1]) >= 0 && unhex(b[i+2]) >= 0:
			out = append(out, byte(unhex(b[i+1])<<4|unhex(b[i+2])))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// decodeBase64 decodes base64 leniently: bytes outside the alphabet are
// skipped and a truncated end is dropped.
func decodeBase64(b []byte) []byte {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' {
			clean = append(clean, c)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean)
	return out[:n]
}

// stripHTML returns the text of an HTML document: tags and comments
// removed, the content of head, script and style dropped, entities decoded.
func stripHTML(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i:]
		if strings.HasPrefix(s, "<!--") {
			if j := strings.Index(s, "-->"); j >= 0 {
				s = s[j+3:]
			} else {
				s = ""
			}
			continue
		}
		name := tagName(s[1:])
		j := strings.IndexByte(s, '>')
		if j < 0 {
			break
		}
		s = s[j+1:]
		b.WriteByte(' ')
		switch name {
		case "head", "script", "style", "title":
			if k := indexFold(s, "</"+name); k >= 0 {
				s = s[k:]
			} else {
				s = ""
			}
		}
	}
	return html.UnescapeString(b.String())
}

func tagName(s string) string {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	return strings.ToLower(s[:i])
}

func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// collapse turns runs of whitespace into one space, drops invisible format
// characters (zero-width joiners and the like that newsletters pad their
// preview with) and keeps at most n runes.
func collapse(s string, n int) string {
	var b strings.Builder
	count := 0
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.Is(unicode.Cf, r), r == '\u034f', r == utf8.RuneError:
			continue
		}
		if space {
			if count++; count > n {
				break
			}
			b.WriteByte(' ')
			space = false
		}
		if count++; count > n {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
