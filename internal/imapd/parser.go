package imapd

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// protoErr is a failed command: a tagged BAD (syntax) or NO (refused),
// with an optional response code (RFC 5530). fatal closes the session
// after the reply.
type protoErr struct {
	bad   bool
	code  string
	msg   string
	fatal bool
}

func (e *protoErr) Error() string { return e.msg }

func badf(format string, args ...any) *protoErr {
	return &protoErr{bad: true, msg: fmt.Sprintf(format, args...)}
}

func nof(code, format string, args ...any) *protoErr {
	return &protoErr{code: code, msg: fmt.Sprintf(format, args...)}
}

// parser reads one command: the line it started with and, after each
// literal, the line that follows it. It never holds more than one line
// plus one inline literal (at most maxInlineLiteral bytes).
type parser struct {
	c     *conn
	line  []byte
	pos   int
	depth int
	// pendingLit is set when the current line ends in a literal
	// announcement not yet consumed (for skipRest).
}

func newParser(c *conn, line []byte) *parser { return &parser{c: c, line: line} }

func (p *parser) eol() bool { return p.pos >= len(p.line) }

func (p *parser) peek() byte {
	if p.eol() {
		return 0
	}
	return p.line[p.pos]
}

func (p *parser) take(b byte) bool {
	if p.peek() == b && !p.eol() {
		p.pos++
		return true
	}
	return false
}

// takeWord consumes w (case-insensitively) when it comes next.
func (p *parser) takeWord(w string) bool {
	if len(p.line)-p.pos < len(w) || !strings.EqualFold(string(p.line[p.pos:p.pos+len(w)]), w) {
		return false
	}
	p.pos += len(w)
	return true
}

func (p *parser) expect(b byte) error {
	if !p.take(b) {
		return p.errorf("expected %q", b)
	}
	return nil
}

func (p *parser) sp() error { return p.expect(' ') }

func (p *parser) errorf(format string, args ...any) error {
	return badf("syntax error at octet %d: %s", p.pos, fmt.Sprintf(format, args...))
}

// end checks the command is complete.
func (p *parser) end() error {
	if !p.eol() {
		return p.errorf("unexpected trailing data")
	}
	return nil
}

func isAtomChar(b byte) bool {
	if b <= ' ' || b >= 0x7f {
		return false
	}
	switch b {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

func (p *parser) span(ok func(byte) bool) string {
	start := p.pos
	for !p.eol() && ok(p.line[p.pos]) {
		p.pos++
	}
	return string(p.line[start:p.pos])
}

// atom reads an atom (RFC 3501 §9).
func (p *parser) atom() (string, error) {
	s := p.span(isAtomChar)
	if s == "" {
		return "", p.errorf("expected atom")
	}
	return s, nil
}

// tag reads a command tag: astring characters except "+".
func (p *parser) tag() (string, error) {
	s := p.span(func(b byte) bool { return b != '+' && (isAtomChar(b) || b == ']') })
	if s == "" {
		return "", p.errorf("expected tag")
	}
	return s, nil
}

// astring reads an atom (with "]" allowed), a quoted string or a literal.
func (p *parser) astring() (string, error) {
	switch p.peek() {
	case '"', '{':
		return p.string()
	}
	s := p.span(func(b byte) bool { return isAtomChar(b) || b == ']' })
	if s == "" {
		return "", p.errorf("expected astring")
	}
	return s, nil
}

// listMailbox reads a LIST pattern: like astring but with "%" and "*".
func (p *parser) listMailbox() (string, error) {
	switch p.peek() {
	case '"', '{':
		return p.string()
	}
	s := p.span(func(b byte) bool { return isAtomChar(b) || b == ']' || b == '%' || b == '*' })
	if s == "" {
		return "", p.errorf("expected mailbox pattern")
	}
	return s, nil
}

// string reads a quoted string or a literal.
func (p *parser) string() (string, error) {
	if p.take('"') {
		return p.quotedRest()
	}
	if p.peek() == '{' {
		b, err := p.inlineLiteral()
		return string(b), err
	}
	return "", p.errorf("expected string")
}

func (p *parser) quotedRest() (string, error) {
	var sb strings.Builder
	for !p.eol() {
		b := p.line[p.pos]
		p.pos++
		switch b {
		case '"':
			return sb.String(), nil
		case '\\':
			if p.eol() || (p.line[p.pos] != '"' && p.line[p.pos] != '\\') {
				return "", p.errorf("bad escape in quoted string")
			}
			sb.WriteByte(p.line[p.pos])
			p.pos++
		case 0:
			return "", p.errorf("NUL in quoted string")
		default:
			sb.WriteByte(b)
		}
	}
	return "", p.errorf("unterminated quoted string")
}

// literalSpec parses "{n}", "{n+}" (RFC 7888) or with binary "~{n}"
// (RFC 3516), which must end the line.
func (p *parser) literalSpec(allowBinary bool) (n int64, sync, binary bool, err error) {
	if allowBinary && p.take('~') {
		binary = true
	}
	if err := p.expect('{'); err != nil {
		return 0, false, false, err
	}
	digits := p.span(func(b byte) bool { return b >= '0' && b <= '9' })
	if digits == "" || len(digits) > 18 {
		return 0, false, false, p.errorf("bad literal length")
	}
	n, _ = strconv.ParseInt(digits, 10, 64)
	sync = !p.take('+')
	if err := p.expect('}'); err != nil {
		return 0, false, false, err
	}
	if !p.eol() {
		return 0, false, false, p.errorf("literal announcement must end the line")
	}
	return n, sync, binary, nil
}

// inlineLiteral reads a small literal into memory.
func (p *parser) inlineLiteral() ([]byte, error) {
	n, sync, _, err := p.literalSpec(false)
	if err != nil {
		return nil, err
	}
	if n > maxInlineLiteral {
		if !sync {
			// The client is already sending it: the stream cannot be
			// resynchronised cheaply.
			return nil, &protoErr{bad: true, msg: "literal too big", fatal: true}
		}
		return nil, badf("literal too big")
	}
	if err := p.c.continueLiteral(sync); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(p.c.br, buf); err != nil {
		return nil, err
	}
	return buf, p.nextLine()
}

// nextLine reads the rest of the command after a literal.
func (p *parser) nextLine() error {
	line, err := p.c.readLine()
	if err != nil {
		return err
	}
	p.line, p.pos = line, 0
	return nil
}

// skipRest discards the remainder of a failed command: non-synchronising
// literals the client sends anyway and the lines after them. A pending
// synchronising literal needs nothing: the client waits for "+" and gets
// the tagged reply instead.
func (p *parser) skipRest() error {
	for {
		i := strings.LastIndexByte(string(p.line), '{')
		if i < 0 || !strings.HasSuffix(string(p.line), "+}") {
			return nil
		}
		n, err := strconv.ParseInt(string(p.line[i+1:len(p.line)-2]), 10, 64)
		if err != nil || n < 0 {
			return nil
		}
		if n > p.c.srv.cfg.MaxLiteralBytes {
			return errors.New("oversized non-synchronising literal")
		}
		if _, err := io.CopyN(io.Discard, p.c.br, n); err != nil {
			return err
		}
		if err := p.nextLine(); err != nil {
			return err
		}
	}
}

func (p *parser) number64() (uint64, error) {
	digits := p.span(func(b byte) bool { return b >= '0' && b <= '9' })
	if digits == "" {
		return 0, p.errorf("expected number")
	}
	n, err := strconv.ParseUint(digits, 10, 63)
	if err != nil {
		return 0, p.errorf("number out of range")
	}
	return n, nil
}

func (p *parser) number() (uint32, error) {
	n, err := p.number64()
	if err != nil {
		return 0, err
	}
	if n > 1<<32-1 {
		return 0, p.errorf("number out of range")
	}
	return uint32(n), nil
}

func (p *parser) nzNumber() (uint32, error) {
	n, err := p.number()
	if err == nil && n == 0 {
		err = p.errorf("expected non-zero number")
	}
	return n, err
}

// list parses "(" item *(SP item) ")" calling item for each; empty lists
// are allowed.
func (p *parser) list(item func() error) error {
	if err := p.expect('('); err != nil {
		return err
	}
	p.depth++
	if p.depth > maxDepth {
		return p.errorf("lists nested too deeply")
	}
	defer func() { p.depth-- }()
	if p.take(')') {
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if p.take(')') {
			return nil
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
}

// seqRange is lo:hi; 0 stands for "*".
type seqRange struct{ lo, hi uint32 }

// seqSet is a sequence set or "$" (the saved search result, RFC 5182).
type seqSet struct {
	ranges []seqRange
	saved  bool
}

func (p *parser) seqNumber() (uint32, error) {
	if p.take('*') {
		return 0, nil
	}
	return p.nzNumber()
}

func (p *parser) seqSet() (seqSet, error) {
	if p.take('$') {
		return seqSet{saved: true}, nil
	}
	var s seqSet
	for {
		lo, err := p.seqNumber()
		if err != nil {
			return s, err
		}
		hi := lo
		if p.take(':') {
			if hi, err = p.seqNumber(); err != nil {
				return s, err
			}
		}
		s.ranges = append(s.ranges, seqRange{lo, hi})
		if len(s.ranges) > 100000 {
			return s, p.errorf("sequence set too long")
		}
		if !p.take(',') {
			return s, nil
		}
	}
}

// flag reads a flag: "\" atom or a keyword atom.
func (p *parser) flag() (string, error) {
	if p.take('\\') {
		a, err := p.atom()
		if err != nil {
			return "", err
		}
		return canonicalFlag(`\` + a)
	}
	return p.atom()
}

var systemFlags = []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`}

// canonicalFlag spells system flags the store's way and refuses unknown
// ones (and \Recent, which clients may not set).
func canonicalFlag(f string) (string, error) {
	for _, s := range systemFlags {
		if strings.EqualFold(f, s) {
			return s, nil
		}
	}
	if strings.EqualFold(f, `\Recent`) {
		return "", badf(`\Recent cannot be set`)
	}
	return "", badf("unknown system flag %s", f)
}

func (p *parser) flagList() ([]string, error) {
	var flags []string
	err := p.list(func() error {
		f, err := p.flag()
		flags = append(flags, f)
		return err
	})
	return flags, err
}

var months = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// date reads a search date (d-Mon-yyyy), quoted or not.
func (p *parser) date() (time.Time, error) {
	quoted := p.take('"')
	s := p.span(func(b byte) bool { return b == '-' || (b >= '0' && b <= '9') || (b|0x20 >= 'a' && b|0x20 <= 'z') })
	if quoted {
		if err := p.expect('"'); err != nil {
			return time.Time{}, err
		}
	}
	t, err := time.Parse("2-Jan-2006", s)
	if err != nil {
		return time.Time{}, p.errorf("bad date")
	}
	return t, nil
}

// dateTime reads an APPEND date-time: "dd-Mon-yyyy hh:mm:ss +zzzz".
func (p *parser) dateTime() (time.Time, error) {
	if err := p.expect('"'); err != nil {
		return time.Time{}, err
	}
	s, err := p.quotedRest()
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse("_2-Jan-2006 15:04:05 -0700", s)
	if err != nil {
		return time.Time{}, p.errorf("bad date-time")
	}
	return t, nil
}
