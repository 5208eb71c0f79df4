package msginfo

import (
	"bytes"
	"strings"
)

// maxFieldValue caps what is kept of one header field's value. Offsets stay
// exact; only the kept text is cut. 256 KiB holds a To: with thousands of
// recipients.
const maxFieldValue = 256 << 10

// field is one kept header field: lower-case name and the unfolded value.
type field struct {
	name  string
	value []byte
}

// header holds the fields of one header block that Info needs; others are
// skipped as they are read, so memory does not grow with the header.
type header []field

func (h header) get(name string) string {
	for _, f := range h {
		if f.name == name {
			return string(bytes.TrimSpace(f.value))
		}
	}
	return ""
}

func (h header) has(name string) bool {
	for _, f := range h {
		if f.name == name {
			return true
		}
	}
	return false
}

// keptFields are the fields parsed into Part and Envelope.
var keptFields = map[string]bool{
	"content-type": true, "content-transfer-encoding": true,
	"content-disposition": true, "content-id": true,
	"content-description": true, "content-md5": true,
	"content-language": true, "content-location": true,
	"date": true, "subject": true, "from": true, "sender": true,
	"reply-to": true, "to": true, "cc": true, "bcc": true,
	"in-reply-to": true, "message-id": true,
}

// fieldName returns the name of a header field line, or false when the line
// is not one: a name is a run of bytes other than controls, space and
// colon, followed by optional whitespace and a colon (RFC 5322 §2.2 and the
// obsolete WSP before the colon of §4.5). 8-bit names are accepted.
func fieldName(b []byte) ([]byte, int, bool) {
	i := 0
	for i < len(b) && b[i] > ' ' && b[i] != ':' && b[i] != 0x7f {
		i++
	}
	if i == 0 {
		return nil, 0, false
	}
	j := i
	for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
		j++
	}
	if j >= len(b) || b[j] != ':' {
		return nil, 0, false
	}
	return b[:i], j + 1, true
}

// headerEnd says where and how a header block ended.
type headerEnd struct {
	bodyStart int64
	lfBody    int64 // LF bytes before bodyStart
	stop      *stop // non-nil when a delimiter or EOF ended the header
}

// readHeader reads one header block. It ends at the blank line, at a line
// that cannot be a header field (which then starts the body: mail without
// the blank line is common), at a delimiter of an enclosing multipart, or
// at the end of input.
func (p *parser) readHeader(hdrStart int64, bounds []string) (header, headerEnd) {
	var h header
	cur := -1 // index in h of the field being continued, -1 when skipped
	first := true
	for {
		l, ok := p.lr.next()
		if !ok {
			st := p.eofStop()
			return h, headerEnd{bodyStart: st.at, lfBody: p.lr.lf, stop: &st}
		}
		if st, ok := matchDelim(l, bounds); ok {
			bs := max(l.start-int64(l.prevEOL), hdrStart)
			lfb := l.lfBefore
			if bs < l.start {
				lfb--
			}
			return h, headerEnd{bodyStart: bs, lfBody: lfb, stop: &st}
		}
		if len(l.b) == 0 && l.eol > 0 {
			return h, headerEnd{bodyStart: l.end, lfBody: l.lfBefore + 1}
		}
		if l.b[0] == ' ' || l.b[0] == '\t' {
			if cur >= 0 && len(h[cur].value) < maxFieldValue {
				h[cur].value = appendCapped(h[cur].value, l.b)
			}
			first = false
			continue
		}
		name, vstart, ok := fieldName(l.b)
		if !ok {
			if first && bytes.HasPrefix(l.b, []byte("From ")) {
				// An mbox separator left at the top: not a field, not body.
				first = false
				continue
			}
			p.lr.unread()
			return h, headerEnd{bodyStart: l.start, lfBody: l.lfBefore}
		}
		first = false
		cur = -1
		lname := strings.ToLower(string(name))
		if keptFields[lname] && !h.has(lname) {
			h = append(h, field{name: lname, value: appendCapped(nil, l.b[vstart:])})
			cur = len(h) - 1
		}
	}
}

func appendCapped(dst, b []byte) []byte {
	if room := maxFieldValue - len(dst); len(b) > room {
		b = b[:max(room, 0)]
	}
	return append(dst, b...)
}

// HeaderFields returns the fields of header whose names are in names (or,
// with not, are not), compared case-insensitively, each with its folded
// continuation lines and in their original order, followed by the blank
// line: what IMAP BODY[HEADER.FIELDS (...)] and BODY[HEADER.FIELDS.NOT
// (...)] return (RFC 3501 §6.4.5). Lines that are not fields are dropped.
// Line endings are kept as stored; a last field without one gets CRLF.
func HeaderFields(header []byte, names []string, not bool) []byte {
	var out []byte
	keep := false
	for len(header) > 0 {
		i := bytes.IndexByte(header, '\n')
		var ln []byte
		if i < 0 {
			ln, header = header, nil
		} else {
			ln, header = header[:i+1], header[i+1:]
		}
		content := bytes.TrimRight(ln, "\r\n")
		if len(content) == 0 {
			break // the blank line ending the header
		}
		if content[0] != ' ' && content[0] != '\t' {
			name, _, ok := fieldName(content)
			keep = ok && containsFold(names, name) != not
		}
		if keep {
			out = append(out, ln...)
			if ln[len(ln)-1] != '\n' {
				out = append(out, '\r', '\n')
			}
		}
	}
	return append(out, '\r', '\n')
}

func containsFold(names []string, name []byte) bool {
	for _, n := range names {
		if strings.EqualFold(n, string(name)) {
			return true
		}
	}
	return false
}
