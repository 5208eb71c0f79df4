// Package mime7bit turns a message into one a 7-bit SMTP peer may carry,
// as RFC 6152 §3 asks of a client whose peer lacks 8BITMIME: each leaf
// part whose body is 8-bit or binary is re-encoded, quoted-printable for
// text/* and base64 for anything else, and its Content-Transfer-Encoding
// changed to say so. Multiparts and enclosed messages are followed rather
// than encoded, since RFC 2045 §6.4 and RFC 2046 §5.2.1 allow them only
// the identity encodings.
//
// Classify says whether a message needs this at all. Prepare parses the
// message (msginfo.Parse, the parse IMAP serves from) and decides what
// each part needs; Conversion.WriteTo then writes the converted message,
// reading the original again each time and writing the same bytes each
// time, so a caller can make one pass to sign or measure the result and
// another to send it, without holding a converted copy. Memory does not
// grow with the size of the message.
//
// Header fields are never encoded (RFC 2047 is for the sender to apply,
// and raw UTF-8 needs SMTPUTF8, RFC 6532): a header that cannot travel
// as it is makes the conversion fail.
package mime7bit

import (
	"bufio"
	"errors"
	"io"
	"unicode/utf8"
)

// maxLine is the longest line SMTP carries, without its CRLF (RFC 5321
// §4.5.3.1.6).
const maxLine = 998

// Class is what a message body holds, as far as transport goes.
type Class int

const (
	// SevenBit: octets 1 to 127, CRLF line endings, lines of at most
	// 998 octets. Any peer takes it.
	SevenBit Class = iota
	// EightBit: as SevenBit, plus octets of 128 and above: what
	// BODY=8BITMIME allows (RFC 6152 §2).
	EightBit
	// Binary: NUL, a bare CR or LF, or a longer line, which only
	// BODY=BINARYMIME (RFC 3030) carries; DATA cannot.
	Binary
)

func (c Class) String() string {
	switch c {
	case SevenBit:
		return "7bit"
	case EightBit:
		return "8bit"
	}
	return "binary"
}

// Classify reads a whole message and says what its body holds. The
// header, up to the first empty line, is not looked at: 8-bit header
// fields are a matter for SMTPUTF8, not for the body's encoding.
func Classify(r io.Reader) (Class, error) {
	br := bufio.NewReaderSize(r, 32<<10)
	bol := true // at the beginning of a line
	for {
		l, err := br.ReadSlice('\n')
		if bol && (string(l) == "\r\n" || string(l) == "\n") {
			break
		}
		if err == io.EOF {
			return SevenBit, nil // a header and no body
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, err
		}
		bol = err == nil
	}
	var m meter
	if _, err := br.WriteTo(&m); err != nil {
		return 0, err
	}
	m.close()
	return m.class(), nil
}

// meter watches octets go by and notes what would keep them off a 7-bit
// transport.
type meter struct {
	col      int  // octets in the current line so far
	cr       bool // the last octet was a CR
	eightBit bool // an octet ≥ 128
	binary   bool // NUL, a bare CR or LF, or a line over maxLine
	n        int64
	utf8     utf8Check
}

func (m *meter) Write(p []byte) (int, error) {
	m.n += int64(len(p))
	m.utf8.write(p)
	for _, b := range p {
		if m.cr {
			m.cr = false
			if b == '\n' {
				m.col = 0
				continue
			}
			m.binary = true
		}
		switch {
		case b == '\r':
			m.cr = true
			continue
		case b == '\n' || b == 0:
			m.binary = true
		case b >= 0x80:
			m.eightBit = true
		}
		if m.col++; m.col > maxLine {
			m.binary = true
		}
	}
	return len(p), nil
}

// close notes a CR left at the end: nothing follows it, so it is bare.
func (m *meter) close() {
	if m.cr {
		m.binary = true
		m.cr = false
	}
	m.utf8.close()
}

func (m *meter) clean() bool { return !m.eightBit && !m.binary }

func (m *meter) class() Class {
	switch {
	case m.binary:
		return Binary
	case m.eightBit:
		return EightBit
	}
	return SevenBit
}

// utf8Check validates UTF-8 written in pieces that may split a
// character.
type utf8Check struct {
	carry [utf8.UTFMax]byte
	n     int
	bad   bool
}

func (u *utf8Check) write(p []byte) {
	for len(p) > 0 && u.n > 0 && !u.bad {
		// Complete the character the last piece began.
		u.carry[u.n] = p[0]
		u.n++
		p = p[1:]
		if utf8.FullRune(u.carry[:u.n]) {
			r, size := utf8.DecodeRune(u.carry[:u.n])
			u.bad = r == utf8.RuneError && size <= 1 || size != u.n
			u.n = 0
		}
	}
	if u.bad || len(p) == 0 {
		return
	}
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		u.bad = true
		return
	}
	u.n = copy(u.carry[:], p[cut:])
}

func (u *utf8Check) close() {
	if u.n > 0 {
		u.bad = true
	}
}

func (u *utf8Check) valid() bool { return !u.bad }
