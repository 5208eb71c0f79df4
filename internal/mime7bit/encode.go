package mime7bit

import (
	"bufio"
	"encoding/base64"
)

// The encoders write to a bufio.Writer, whose first error sticks: they
// note it and return it, so a copy into them stops when the reader of
// the output has gone.

// qpLine is the longest encoded line, "=" of a soft line break included
// (RFC 2045 §6.7 rule 5).
const qpLine = 76

// qpWriter encodes quoted-printable (RFC 2045 §6.7) so that decoding
// gives back every octet: CRLF is a line break; a bare CR or LF, like
// any octet outside 33..126, is written =XX; so is whitespace before a
// line break, which transports may strip (rule 3), and a "-" beginning a
// line, so no encoded line can be taken for a multipart delimiter.
type qpWriter struct {
	w   *bufio.Writer
	col int
	cr  bool // a CR held back: a line break if LF follows
	ws  byte // a space or tab held back: encoded if a line break follows
	err error
}

func newQPWriter(w *bufio.Writer) *qpWriter { return &qpWriter{w: w} }

func (q *qpWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		q.put(b)
	}
	return len(p), q.err
}

func (q *qpWriter) put(b byte) {
	if q.cr {
		q.cr = false
		if b == '\n' {
			q.flushWS(true)
			q.raw("\r\n")
			q.col = 0
			return
		}
		q.flushWS(false)
		q.escape('\r')
	}
	switch {
	case b == '\r':
		q.cr = true
	case b == ' ' || b == '\t':
		q.flushWS(false)
		q.ws = b
	default:
		q.flushWS(false)
		if b == '-' {
			q.room(1) // so that col says where the "-" lands
		}
		if b > ' ' && b < 0x7f && b != '=' && (b != '-' || q.col > 0) {
			q.literal(b)
		} else {
			q.escape(b)
		}
	}
}

// flushWS writes the held whitespace, encoded when a line break follows.
func (q *qpWriter) flushWS(encode bool) {
	if q.ws == 0 {
		return
	}
	if encode {
		q.escape(q.ws)
	} else {
		q.literal(q.ws)
	}
	q.ws = 0
}

func (q *qpWriter) literal(b byte) {
	q.room(1)
	q.note(q.w.WriteByte(b))
	q.col++
}

func (q *qpWriter) escape(b byte) {
	const hex = "0123456789ABCDEF"
	q.room(3)
	q.raw(string([]byte{'=', hex[b>>4], hex[b&15]}))
	q.col += 3
}

// room breaks the line softly unless n more octets fit before the "=".
func (q *qpWriter) room(n int) {
	if q.col+n > qpLine-1 {
		q.raw("=\r\n")
		q.col = 0
	}
}

func (q *qpWriter) raw(s string) {
	_, err := q.w.WriteString(s)
	q.note(err)
}

func (q *qpWriter) note(err error) {
	if q.err == nil {
		q.err = err
	}
}

// finish writes what is held back. A part's body is followed by the line
// break before a delimiter; the end of the message by nothing, so when
// final a last line is ended with a soft line break, which decodes to
// nothing.
func (q *qpWriter) finish(final bool) error {
	if q.cr {
		q.cr = false
		q.flushWS(false)
		q.escape('\r')
	}
	q.flushWS(true)
	if final && q.col > 0 {
		q.raw("=\r\n")
		q.col = 0
	}
	return q.err
}

// lineWriter cuts base64 into lines of 76 characters (RFC 2045 §6.8).
type lineWriter struct {
	w   *bufio.Writer
	col int
	err error
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && l.err == nil {
		if l.col == qpLine {
			_, l.err = l.w.WriteString("\r\n")
			l.col = 0
		}
		k := min(qpLine-l.col, len(p))
		_, l.err = l.w.Write(p[:k])
		l.col += k
		p = p[k:]
	}
	return n, l.err
}

func (l *lineWriter) finish(final bool) error {
	if final && l.col > 0 && l.err == nil {
		_, l.err = l.w.WriteString("\r\n")
		l.col = 0
	}
	return l.err
}

// base64Writer encodes base64 in lines.
type base64Writer struct {
	lines *lineWriter
	enc   interface {
		Write([]byte) (int, error)
		Close() error
	}
}

func newBase64Writer(w *bufio.Writer) *base64Writer {
	l := &lineWriter{w: w}
	return &base64Writer{lines: l, enc: base64.NewEncoder(base64.StdEncoding, l)}
}

func (b *base64Writer) Write(p []byte) (int, error) { return b.enc.Write(p) }

func (b *base64Writer) finish(final bool) error {
	if err := b.enc.Close(); err != nil {
		return err
	}
	return b.lines.finish(final)
}

// rewrapWriter mends a base64 body with overlong lines or stray octets:
// it keeps the characters of the base64 alphabet, which is all a decoder
// reads (RFC 2045 §6.8), in lines of 76.
type rewrapWriter struct {
	lines *lineWriter
	buf   []byte
}

func newRewrapWriter(w *bufio.Writer) *rewrapWriter {
	return &rewrapWriter{lines: &lineWriter{w: w}}
}

func (r *rewrapWriter) Write(p []byte) (int, error) {
	r.buf = r.buf[:0]
	for _, b := range p {
		if 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '+' || b == '/' || b == '=' {
			r.buf = append(r.buf, b)
		}
	}
	if _, err := r.lines.Write(r.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (r *rewrapWriter) finish(final bool) error { return r.lines.finish(final) }
