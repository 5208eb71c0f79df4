package cli

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// mboxReader splits an mbox file (RFC 4155) into messages. Every line
// that starts with "From " begins a message: mboxo and mboxrd writers both
// quote such lines inside bodies (">From "). Bodies are unquoted as mboxrd
// does (one '>' comes off ">From ", ">>From ", ...), and the empty line a
// writer puts after each message is not part of it.
type mboxReader struct {
	br     *bufio.Reader
	read   int64  // bytes taken from br, for progress
	from   []byte // the From_ line starting the next message; nil at the end
	offset int64  // where that line starts in the file
	body   *mboxBody
}

// errNotMbox: the input does not start with a From_ line.
var errNotMbox = errors.New("not an mbox file: it does not start with a \"From \" line")

func newMboxReader(r io.Reader) (*mboxReader, error) {
	m := &mboxReader{br: bufio.NewReaderSize(r, 64<<10)}
	for {
		line, err := m.line()
		if len(line) > 0 && !isBlankLine(line) {
			if !bytes.HasPrefix(line, []byte("From ")) {
				return nil, errNotMbox
			}
			m.from = m.restOfLine(line, err)
			return m, nil
		}
		if err != nil {
			return m, nil // empty: no messages
		}
		m.offset = m.read
	}
}

// line reads up to and including the next '\n', or a buffer's worth.
// The slice is valid until the next read.
func (m *mboxReader) line() ([]byte, error) {
	line, err := m.br.ReadSlice('\n')
	m.read += int64(len(line))
	if errors.Is(err, bufio.ErrBufferFull) {
		err = nil
	}
	return line, err
}

// restOfLine copies a From_ line whose start is in line, skipping what
// does not fit a buffer (From_ lines are short; only the date matters).
func (m *mboxReader) restOfLine(line []byte, err error) []byte {
	from := bytes.Clone(line)
	for err == nil && !bytes.HasSuffix(line, []byte("\n")) {
		line, err = m.line()
	}
	return bytes.TrimRight(from, "\r\n")
}

// mboxMessage is one message of an mbox file.
type mboxMessage struct {
	From   string // the From_ line, without its line end
	Offset int64  // where the From_ line starts in the file
	Body   io.Reader
}

// next returns the next message, or io.EOF after the last. Its Body is
// valid until the next call; what the caller left unread is skipped.
func (m *mboxReader) next() (mboxMessage, error) {
	if m.body != nil {
		if _, err := io.Copy(io.Discard, m.body); err != nil {
			return mboxMessage{}, err
		}
	}
	if m.from == nil {
		return mboxMessage{}, io.EOF
	}
	msg := mboxMessage{From: string(m.from), Offset: m.offset}
	m.from = nil
	m.body = &mboxBody{m: m}
	msg.Body = m.body
	return msg, nil
}

// mboxBody reads one message's body up to the next From_ line.
type mboxBody struct {
	m       *mboxReader
	out     []byte // unquoted bytes not yet returned
	blank   []byte // an empty line held back: it may be the separator's
	midLine bool   // the last read ended inside a long line
	err     error  // io.EOF once the message is over
}

func (b *mboxBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 && b.err == nil {
		b.fill()
	}
	if len(b.out) > 0 {
		n := copy(p, b.out)
		b.out = b.out[n:]
		return n, nil
	}
	return 0, b.err
}

// fill reads one line (or a buffer's worth of a long one) into out.
func (b *mboxBody) fill() {
	m := b.m
	start := m.read
	line, err := m.line()
	if len(line) == 0 && err != nil {
		// The empty line a writer ends the file with is not the message's.
		b.err = err
		return
	}
	atStart := !b.midLine
	b.midLine = len(line) > 0 && line[len(line)-1] != '\n'
	switch {
	case atStart && bytes.HasPrefix(line, []byte("From ")):
		m.from, m.offset = m.restOfLine(line, err), start
		b.midLine = false
		b.err = io.EOF // the held-back empty line was the separator
		return
	case atStart && isBlankLine(line):
		b.out = append(b.out[:0], b.blank...)
		b.blank = append(b.blank[:0], line...)
	default:
		b.out = append(b.out[:0], b.blank...)
		b.blank = b.blank[:0]
		if atStart && isQuotedFrom(line) {
			line = line[1:]
		}
		b.out = append(b.out, line...)
	}
	if err != nil {
		b.err = err // a last line without line end
	}
}

func isBlankLine(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

// isQuotedFrom reports whether line is ">From ", ">>From ", ... (mboxrd).
func isQuotedFrom(line []byte) bool {
	rest := bytes.TrimLeft(line, ">")
	return len(rest) < len(line) && bytes.HasPrefix(rest, []byte("From "))
}

// fromLineDate parses the date at the end of a From_ line ("From sender
// Thu Nov 26 02:08:11 2026", sometimes with a zone). Without a zone the
// date is taken as local time: mbox files are written by the local
// system. It returns the zero time when nothing parses.
func fromLineDate(line string) time.Time {
	fields := strings.Fields(strings.TrimPrefix(line, "From "))
	layouts := []string{
		"Mon Jan 2 15:04:05 2006",
		"Mon Jan 2 15:04:05 2006 -0700",
		"Mon Jan 2 15:04:05 -0700 2006",
		"Mon Jan 2 15:04:05 MST 2006",
		"Mon Jan 2 15:04 2006",
	}
	for n := 5; n <= 6; n++ {
		if len(fields) < n {
			break
		}
		s := strings.Join(fields[len(fields)-n:], " ")
		for _, l := range layouts {
			if t, err := time.ParseInLocation(l, s, time.Local); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// maxHeaderScan bounds how much of a message is held in memory to find
// its Status: and X-Status: fields.
const maxHeaderScan = 256 << 10

// statusFlags reads the header section of body and returns the flags its
// Status: and X-Status: fields give (as mutt and Dovecot write them:
// R = seen; A = answered, F = flagged, T = draft, D = deleted), and a
// reader of the whole message, header included.
func statusFlags(body io.Reader) ([]string, io.Reader) {
	br := bufio.NewReader(body)
	var head []byte
	var flags []string
	add := func(f string) {
		for _, g := range flags {
			if g == f {
				return
			}
		}
		flags = append(flags, f)
	}
	for len(head) < maxHeaderScan {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if isBlankLine(line) || err != nil {
			break
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok {
			continue
		}
		switch strings.ToLower(name) {
		case "status":
			if strings.Contains(value, "R") {
				add(store.FlagSeen)
			}
		case "x-status":
			for _, c := range strings.TrimSpace(value) {
				switch c {
				case 'A':
					add(store.FlagAnswered)
				case 'F':
					add(store.FlagFlagged)
				case 'T':
					add(store.FlagDraft)
				case 'D':
					add(store.FlagDeleted)
				}
			}
		}
	}
	return flags, io.MultiReader(bytes.NewReader(head), br)
}

// crlfReader turns bare LF line ends into CRLF (RFC 5322 §2.1, which
// IMAP and POP3 serve); mbox and Maildir files mostly use LF alone.
type crlfReader struct {
	r      *bufio.Reader
	lastCR bool
	lf     bool // an LF is owed after the CR just returned
}

func newCRLFReader(r io.Reader) *crlfReader { return &crlfReader{r: bufio.NewReader(r)} }

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.lf {
			p[n], c.lf, c.lastCR = '\n', false, false
			n++
			continue
		}
		if n > 0 && c.r.Buffered() == 0 {
			break
		}
		b, err := c.r.ReadByte()
		if err != nil {
			if n > 0 {
				break
			}
			return 0, err
		}
		if b == '\n' && !c.lastCR {
			p[n], c.lf = '\r', true
			n++
			continue
		}
		c.lastCR = b == '\r'
		p[n] = b
		n++
	}
	return n, nil
}
