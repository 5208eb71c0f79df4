package mime7bit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ternmail/tern/internal/msginfo"
)

// ErrUnconvertible is wrapped by the errors of Prepare that say the
// message cannot be made 7-bit (RFC 3463 5.6.3), as opposed to failures
// to read it.
var ErrUnconvertible = errors.New("message cannot be converted to 7 bit")

// Options change what the converted message may hold.
type Options struct {
	// UTF8Header lets header fields hold octets of 128 and above: the
	// peer announced SMTPUTF8 (RFC 6531, RFC 6532 §3.2).
	UTF8Header bool
}

// Conversion is a message prepared for conversion: WriteTo writes it.
type Conversion struct {
	src   io.ReaderAt
	opts  Options
	root  *msginfo.Part
	plans map[*msginfo.Part]*plan
}

// What becomes of a part.
type kind int

const (
	copyBody  kind = iota // 7-bit already: as it is
	quote                 // 8-bit or binary text: quoted-printable
	base64Enc             // 8-bit or binary non-text: base64
	rewrap                // base64 with long lines or stray octets: re-wrapped
	requote               // broken quoted-printable: decoded leniently and quoted again
	multipart             // followed: preamble, parts, epilogue
	enclosed              // message/rfc822, followed
)

// plan is what Prepare decided for one part.
type plan struct {
	kind    kind
	cte     string // the new Content-Transfer-Encoding, "" to keep the header's
	addType string // a Content-Type field to add, "" for none
	addMV   bool   // add MIME-Version: 1.0

	// multipart: the preamble runs from the body's start to preEnd and
	// the epilogue from epiStart (-1: none) to the part's end; each is
	// dropped unless it is 7-bit, since nothing MIME-aware reads them
	// (RFC 2046 §5.1.1).
	boundary         string
	preEnd, epiStart int64
	keepPre, keepEpi bool
	closeEOL         bool // the close delimiter line has its line ending
	// enclosed: whether what follows the enclosed message, if anything,
	// is kept.
	keepTail bool

	hdr headerInfo
}

// Prepare parses the message of size octets in src and decides how to
// convert it. It reads src twice. An error wrapping ErrUnconvertible says
// why the message cannot be converted; others are read errors.
func Prepare(src io.ReaderAt, size int64, opts Options) (*Conversion, error) {
	info, err := msginfo.Parse(src, size)
	if err != nil {
		return nil, err
	}
	c := &Conversion{src: src, opts: opts, root: &info.Body, plans: map[*msginfo.Part]*plan{}}
	if err := newPass(c).planPart(c.root, true); err != nil {
		return nil, err
	}
	return c, nil
}

// pass is one read of the message, with the buffers it reuses for each
// range it reads, so that the memory it takes does not grow with the
// number of parts.
type pass struct {
	*Conversion
	br   *bufio.Reader
	buf  []byte // for copies
	keep []byte // the line eachLine shows
}

func newPass(c *Conversion) *pass {
	return &pass{Conversion: c, br: bufio.NewReaderSize(nil, 16<<10), buf: make([]byte, 32<<10)}
}

// copy copies src[from:to] to w.
func (c *pass) copy(w io.Writer, from, to int64) error {
	_, err := io.CopyBuffer(w, io.NewSectionReader(c.src, from, to-from), c.buf)
	return err
}

func unconvertible(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnconvertible}, args...)...)
}

// planPart decides for pt and its descendants. isMsg says pt is a whole
// message (the top level, or one enclosed in message/rfc822), whose
// header may need MIME-Version.
func (c *pass) planPart(pt *msginfo.Part, isMsg bool) error {
	h, err := c.scanHeader(pt)
	if err != nil {
		return err
	}
	p := &plan{hdr: h}
	c.plans[pt] = p
	identity := pt.Encoding == "7BIT" || pt.Encoding == "8BIT" || pt.Encoding == "BINARY"
	switch {
	case len(pt.Children) > 0:
		p.kind = multipart
		err = c.planMultipart(pt, p)
	case pt.Message != nil && identity:
		p.kind = enclosed
		if err = c.planPart(pt.Message, true); err == nil {
			p.keepTail, err = c.clean(pt.Message.End, pt.End)
		}
	default:
		err = c.planLeaf(pt, p, h)
	}
	if err != nil {
		return err
	}
	if p.cte == "" && p.kind != requote && p.kind != rewrap && (pt.Encoding == "8BIT" || pt.Encoding == "BINARY") {
		p.cte = "7bit" // what the part is now
	}
	p.addMV = isMsg && !h.hasMIMEVersion && (p.cte != "" || p.addType != "")
	return nil
}

// planLeaf decides how a part whose structure is not followed travels.
func (c *pass) planLeaf(pt *msginfo.Part, p *plan, h headerInfo) error {
	var m meter
	if err := c.copy(&m, pt.BodyStart, pt.End); err != nil {
		return err
	}
	m.close()
	if m.clean() {
		p.kind = copyBody
		return nil
	}
	switch pt.Encoding {
	case "BASE64":
		// Decoders skip what is not in the alphabet (RFC 2045 §6.8).
		p.kind = rewrap
		return nil
	case "QUOTED-PRINTABLE":
		p.kind = requote
		return nil
	case "7BIT", "8BIT", "BINARY":
	default:
		return unconvertible("part encoded as %q holds 8-bit or binary data", strings.ToLower(pt.Encoding))
	}
	switch {
	case h.composite():
		// A multipart or message whose structure could not be followed
		// (no boundary, no delimiter, nested too deep): RFC 2045 §6.4
		// and RFC 2046 §5.2 forbid encoding it whole.
		return unconvertible("%s part with 8-bit or binary data and no structure to follow", h.ctype)
	case pt.Type == "text":
		p.kind, p.cte = quote, "quoted-printable"
	default:
		p.kind, p.cte = base64Enc, "base64"
	}
	if !h.hasContentType && p.kind == quote {
		// The default, us-ascii (RFC 2045 §5.2), would be wrong now.
		charset := "us-ascii"
		switch {
		case m.eightBit && m.utf8.valid():
			charset = "utf-8"
		case m.eightBit:
			charset = "unknown-8bit" // RFC 1428 §3
		}
		p.addType = "text/plain; charset=" + charset
	}
	return nil
}

// planMultipart finds the preamble and epilogue and plans each part.
func (c *pass) planMultipart(pt *msginfo.Part, p *plan) error {
	p.boundary = param(pt.Params, "boundary")
	if len(p.boundary) > maxLine-4 || !printable(p.boundary) {
		return unconvertible("unusable multipart boundary")
	}
	first := pt.Children[0].HeaderStart
	var err error
	if p.preEnd, err = c.preambleEnd(pt.BodyStart, first); err != nil {
		return err
	}
	if p.keepPre, err = c.clean(pt.BodyStart, p.preEnd); err != nil {
		return err
	}
	for i := range pt.Children {
		if err := c.planPart(&pt.Children[i], false); err != nil {
			return err
		}
	}
	last := pt.Children[len(pt.Children)-1].End
	if p.epiStart, p.closeEOL, err = c.epilogueStart(last, pt.End, p.boundary); err != nil {
		return err
	}
	if p.epiStart >= 0 {
		p.keepEpi, err = c.clean(p.epiStart, pt.End)
	} else if err == nil && c.capturesClose(&pt.Children[len(pt.Children)-1], p.boundary) {
		err = unconvertible("unterminated multipart that cannot be closed")
	}
	return err
}

// capturesClose reports whether the close delimiter written after last,
// to end a multipart the original left open, could be taken by a part
// inside last that declares a multipart type msginfo could not follow
// (the boundary reused, against RFC 2046 §5.1.2): the converted message
// would then not have the structure of the original.
func (c *pass) capturesClose(last *msginfo.Part, boundary string) bool {
	for last.Message != nil && c.plans[last].kind == enclosed {
		last = last.Message
	}
	p := c.plans[last]
	return len(last.Children) == 0 && strings.HasPrefix(p.hdr.ctype, "multipart/") &&
		strings.Contains(p.hdr.ctValue, boundary)
}

// clean reports whether src[from:to] may be copied as it is.
func (c *pass) clean(from, to int64) (bool, error) {
	if to <= from {
		return true, nil
	}
	var m meter
	if err := c.copy(&m, from, to); err != nil {
		return false, err
	}
	m.close()
	return m.clean(), nil
}

// preambleEnd returns where the preamble of a multipart ends: the last
// line before its first part's header is the first delimiter, and the
// line ending before that delimiter belongs to it (RFC 2046 §5.1.1).
func (c *pass) preambleEnd(from, to int64) (int64, error) {
	var lastStart, prevEOL int64 = from, 0
	err := c.eachLine(from, to, func(l line) bool {
		if l.start+l.size < to {
			lastStart, prevEOL = l.start+l.size, int64(l.eol)
		}
		return true
	})
	return max(from, lastStart-prevEOL), err
}

// epilogueStart returns where the epilogue of a multipart starts: after
// its close delimiter, which follows the last part. -1 means the
// multipart was never closed; eol says whether the close delimiter line
// has its line ending (else it is the enclosing delimiter's). Another
// part there means msginfo stopped following the multipart (too many
// parts): converting it would lose them.
func (c *pass) epilogueStart(from, to int64, boundary string) (start int64, eol bool, err error) {
	start = -1
	var more bool
	err = c.eachLine(from, to, func(l line) bool {
		switch delimiter(l.b, boundary) {
		case closeDelim:
			start, eol = l.start+l.size, l.eol > 0
			return false
		case openDelim:
			more = true
			return false
		}
		return true
	})
	if err == nil && more {
		err = unconvertible("multipart with more parts than can be followed")
	}
	return start, eol, err
}

const (
	notDelim = iota
	openDelim
	closeDelim
)

// delimiter matches as msginfo does: "--", the boundary, "--" for the
// close delimiter, then only transport padding (RFC 2046 §5.1.1).
func delimiter(b []byte, boundary string) int {
	s, ok := strings.CutPrefix(string(b), "--"+boundary)
	if !ok {
		return notDelim
	}
	kind := openDelim
	if rest, ok := strings.CutPrefix(s, "--"); ok {
		kind, s = closeDelim, rest
	}
	if strings.Trim(s, " \t") != "" {
		return notDelim
	}
	return kind
}

func param(ps []msginfo.Param, name string) string {
	for _, p := range ps {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}

// WriteTo writes the converted message to w. It reads the original
// again, and writes the same octets each time it is called.
func (c *Conversion) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	err := newPass(c).writePart(bw, c.root, true)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writePart writes pt as planned. final says nothing follows it: the
// message must then end with a line ending.
func (c *pass) writePart(w *bufio.Writer, pt *msginfo.Part, final bool) error {
	p := c.plans[pt]
	if p == nil {
		return errors.New("mime7bit: message changed since Prepare")
	}
	if err := c.writeHeader(w, pt, p); err != nil {
		return err
	}
	switch p.kind {
	case multipart:
		return c.writeMultipart(w, pt, p, final)
	case enclosed:
		tail := p.keepTail && pt.Message.End < pt.End
		if err := c.writePart(w, pt.Message, final && !tail); err != nil {
			return err
		}
		if tail {
			return c.copy(w, pt.Message.End, pt.End)
		}
		return nil
	}
	return c.writeBody(w, pt, p, final)
}

// writeMultipart writes the delimiters as RFC 2046 §5.1.1 spells them,
// CRLF included, and closes a multipart the original left open.
func (c *pass) writeMultipart(w *bufio.Writer, pt *msginfo.Part, p *plan, final bool) error {
	if p.keepPre && p.preEnd > pt.BodyStart {
		if err := c.copy(w, pt.BodyStart, p.preEnd); err != nil {
			return err
		}
		w.WriteString("\r\n")
	}
	for i := range pt.Children {
		w.WriteString("--" + p.boundary + "\r\n")
		if err := c.writePart(w, &pt.Children[i], false); err != nil {
			return err
		}
		w.WriteString("\r\n")
	}
	w.WriteString("--" + p.boundary + "--")
	if p.closeEOL || final {
		w.WriteString("\r\n")
	}
	if p.closeEOL && p.keepEpi && p.epiStart < pt.End {
		return c.copy(w, p.epiStart, pt.End)
	}
	return nil
}

// writeBody writes a leaf part's body, encoded as planned.
func (c *pass) writeBody(w *bufio.Writer, pt *msginfo.Part, p *plan, final bool) error {
	var enc interface {
		io.Writer
		finish(final bool) error
	}
	switch p.kind {
	case copyBody:
		return c.copy(w, pt.BodyStart, pt.End)
	case quote:
		enc = newQPWriter(w)
	case base64Enc:
		enc = newBase64Writer(w)
	case rewrap:
		enc = newRewrapWriter(w)
	case requote:
		enc = newRequoteWriter(w)
	}
	if err := c.copy(enc, pt.BodyStart, pt.End); err != nil {
		return err
	}
	return enc.finish(final)
}
