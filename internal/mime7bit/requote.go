package mime7bit

import "bufio"

// maxHeldWS bounds the whitespace requoteWriter holds while it waits to
// see whether a line break follows; a longer run is kept as content.
const maxHeldWS = 1024

// requoteWriter mends a body declared quoted-printable that holds what
// quoted-printable may not (8-bit octets, overlong lines): it decodes it
// as leniently as readers do, and encodes the result again. Decoding
// follows RFC 2045 §6.7: "=XX" is an octet (lower-case hex accepted), "="
// before optional whitespace and a line break is a soft line break,
// whitespace before a line break is dropped (rule 3), and anything else,
// a lone "=" included (note 1), is itself.
type requoteWriter struct {
	out   *qpWriter
	state int
	hex1  byte
	ws    []byte // whitespace held: before a line break it goes
	cr    bool   // a CR held: a line break if LF follows
}

const (
	plain   = iota
	eq      // after "="
	eqHex   // after "=" and one hex digit
	eqSpace // after "=" and whitespace: a soft line break if a line break follows
)

func newRequoteWriter(w *bufio.Writer) *requoteWriter {
	return &requoteWriter{out: newQPWriter(w)}
}

func (r *requoteWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		r.put(b)
	}
	return len(p), r.out.err
}

func (r *requoteWriter) put(b byte) {
	if r.cr {
		r.cr = false
		if b == '\n' {
			r.lineBreak("\r\n")
			return
		}
		r.release()
		r.out.put('\r') // a bare CR is content
	}
	switch r.state {
	case eq:
		switch {
		case isHex(b):
			r.hex1, r.state = b, eqHex
		case b == ' ' || b == '\t':
			r.ws, r.state = append(r.ws, b), eqSpace
		case b == '\r':
			r.cr = true
		case b == '\n':
			r.lineBreak("\n")
		default:
			r.release()
			r.put(b)
		}
		return
	case eqHex:
		if isHex(b) {
			r.out.put(unhex(r.hex1)<<4 | unhex(b))
			r.state = plain
			return
		}
		r.release()
	case eqSpace:
		switch {
		case (b == ' ' || b == '\t') && len(r.ws) < maxHeldWS:
			r.ws = append(r.ws, b)
		case b == '\r':
			r.cr = true
		case b == '\n':
			r.lineBreak("\n")
		default:
			r.release()
			r.put(b)
		}
		return
	}
	switch {
	case b == ' ' || b == '\t':
		if len(r.ws) >= maxHeldWS {
			r.release()
		}
		r.ws = append(r.ws, b)
	case b == '\r':
		r.cr = true
	case b == '\n':
		r.lineBreak("\n")
	case b == '=':
		r.release()
		r.state = eq
	default:
		r.release()
		r.out.put(b)
	}
}

// lineBreak ends a line: after "=", softly; otherwise the whitespace
// before it goes and the line break stays, as it was written.
func (r *requoteWriter) lineBreak(eol string) {
	soft := r.state == eq || r.state == eqSpace
	if r.state == eqHex {
		r.release()
	}
	r.state, r.ws = plain, r.ws[:0]
	if !soft {
		for i := 0; i < len(eol); i++ {
			r.out.put(eol[i])
		}
	}
}

// release writes as content what was held in the hope of a line break or
// an escape.
func (r *requoteWriter) release() {
	switch r.state {
	case eq:
		r.out.put('=')
	case eqHex:
		r.out.put('=')
		r.out.put(r.hex1)
	case eqSpace:
		r.out.put('=')
	}
	r.state = plain
	for _, b := range r.ws {
		r.out.put(b)
	}
	r.ws = r.ws[:0]
}

// finish ends the body, which is followed by a line break (the one
// before a delimiter) or the end of the message, where quoted-printable
// readers also end the last line: what was held is resolved as before a
// line break.
func (r *requoteWriter) finish(final bool) error {
	if r.cr {
		r.cr = false
		r.release()
		r.out.put('\r')
	}
	if r.state == eqHex {
		r.release()
	}
	r.state, r.ws = plain, r.ws[:0]
	return r.out.finish(final)
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'A' <= b && b <= 'F' || 'a' <= b && b <= 'f'
}

func unhex(b byte) byte {
	switch {
	case b <= '9':
		return b - '0'
	case b <= 'F':
		return b - 'A' + 10
	}
	return b - 'a' + 10
}
