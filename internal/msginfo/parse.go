package msginfo

import (
	"bytes"
	"fmt"
	"io"
)

// Limits on the MIME tree. Past them the rest of a part is kept as an
// opaque text/plain body: offsets stay exact, only structure is lost.
const (
	maxDepth = 50     // nesting of multipart and message/rfc822 parts
	maxParts = 10_000 // parts in one message
)

// Parse reads a whole message of size bytes from r and returns what Tern
// keeps of it. The message is streamed: memory use does not grow with its
// size. Parse never fails on malformed mail (RFC 5322 and MIME are applied
// as leniently as other servers do: missing blank lines, bare LF line
// endings, missing or unterminated boundaries are all accepted); it returns
// an error only when reading r fails or r holds fewer than size bytes.
func Parse(r io.ReaderAt, size int64) (*Info, error) {
	p := &parser{lr: newLineReader(io.NewSectionReader(r, 0, size))}
	info := &Info{Size: size}
	_, h := p.parsePart(&info.Body, 0, nil, 0, false)
	if err := p.lr.err; err != nil {
		return nil, fmt.Errorf("msginfo: reading message: %w", err)
	}
	if p.lr.off != size {
		return nil, fmt.Errorf("msginfo: read %d of %d message bytes: %w", p.lr.off, size, io.ErrUnexpectedEOF)
	}
	info.Envelope = envelope(h)
	info.HeaderSize = info.Body.BodyStart
	info.Date = parseDate(info.Envelope.Date)
	pv, err := preview(r, &info.Body)
	if err != nil {
		return nil, fmt.Errorf("msginfo: reading preview: %w", err)
	}
	info.Preview = pv
	return info, nil
}

// ParseBytes is Parse for a message held in memory.
func ParseBytes(b []byte) (*Info, error) {
	return Parse(bytes.NewReader(b), int64(len(b)))
}

type parser struct {
	lr    *lineReader
	parts int
}

// stop says how a part's body ended: at a delimiter line of an enclosing
// multipart or at the end of input.
type stop struct {
	eof       bool
	at        int64 // offset of the delimiter line, or of the end of input
	lf        int64 // LF bytes before at
	prevEOL   int   // line ending of the line before at (0: none, or EOF without one)
	prevEmpty bool  // that line was empty
	bound     int   // index of the matched boundary in the stack
	close     bool  // a close delimiter "--boundary--"
	next      int64 // offset just past the delimiter line
}

func (p *parser) eofStop() stop {
	return stop{eof: true, at: p.lr.off, lf: p.lr.lf, prevEOL: p.lr.lastEOL}
}

// matchDelim reports whether l is a delimiter line of one of bounds: "--",
// the boundary, "--" for the close delimiter, then only transport padding
// (RFC 2046 §5.1.1). The innermost boundary is tried first.
func matchDelim(l line, bounds []string) (stop, bool) {
	b := l.b
	if len(bounds) == 0 || len(b) < 3 || b[0] != '-' || b[1] != '-' {
		return stop{}, false
	}
	rest := b[2:]
	for i := len(bounds) - 1; i >= 0; i-- {
		bd := bounds[i]
		if len(rest) < len(bd) || string(rest[:len(bd)]) != bd {
			continue
		}
		r := rest[len(bd):]
		closing := len(r) >= 2 && r[0] == '-' && r[1] == '-'
		if closing {
			r = r[2:]
		}
		if !allWSP(r) {
			continue
		}
		return stop{
			at: l.start, lf: l.lfBefore, prevEOL: l.prevEOL, prevEmpty: l.prevEmpty,
			bound: i, close: closing, next: l.end,
		}, true
	}
	return stop{}, false
}

func allWSP(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// parsePart parses one part whose header starts at hdrStart, up to a
// delimiter of bounds or the end of input, and returns how it ended and the
// part's header (for the envelope of a message).
func (p *parser) parsePart(pt *Part, hdrStart int64, bounds []string, depth int, inDigest bool) (stop, header) {
	p.parts++
	pt.HeaderStart = hdrStart
	h, he := p.readHeader(hdrStart, bounds)
	setContent(pt, h, inDigest)

	structured := pt.Type == "multipart" || isMessage(pt)
	if structured && (depth >= maxDepth || p.parts >= maxParts) {
		setTextPlain(pt)
	}
	if pt.Type == "multipart" && param(pt.Params, "boundary") == "" {
		setTextPlain(pt) // RFC 2046 §5.1.1: the boundary is mandatory
	}

	var st stop
	switch {
	case he.stop != nil:
		st = *he.stop
	case pt.Type == "multipart":
		st = p.parseMultipart(pt, bounds, depth)
	case isMessage(pt):
		msg := new(Part)
		var mh header
		st, mh = p.parsePart(msg, he.bodyStart, bounds, depth+1, false)
		env := envelope(mh)
		pt.Message, pt.Envelope = msg, &env
	default:
		st = p.skipBody(bounds)
	}
	p.finish(pt, he.bodyStart, he.lfBody, st)

	switch {
	case pt.Type == "multipart" && len(pt.Children) == 0:
		// Not one delimiter found: the body is all preamble.
		setTextPlain(pt)
	case isMessage(pt) && pt.Message == nil:
		// The header ended the part: an empty enclosed message.
		pt.Message = &Part{Type: "text", Subtype: "plain", Encoding: "7BIT",
			Params:      []Param{{Name: "charset", Value: "us-ascii"}},
			HeaderStart: pt.End, BodyStart: pt.End, End: pt.End}
		pt.Envelope = &Envelope{}
	}
	return st, h
}

func isMessage(pt *Part) bool { return pt.Type == "message" && pt.Subtype == "rfc822" }

// parseMultipart reads a multipart body: preamble, children, epilogue.
func (p *parser) parseMultipart(pt *Part, bounds []string, depth int) stop {
	own := len(bounds)
	nb := append(bounds[:own:own], param(pt.Params, "boundary"))
	digest := pt.Subtype == "digest"

	st := p.skipBody(nb) // the preamble
	for !st.eof && st.bound == own && !st.close {
		if p.parts >= maxParts {
			return p.skipBody(bounds)
		}
		var c Part
		st, _ = p.parsePart(&c, st.next, nb, depth+1, digest)
		pt.Children = append(pt.Children, c)
	}
	if !st.eof && st.bound == own {
		st = p.skipBody(bounds) // the epilogue after the close delimiter
	}
	return st
}

// skipBody reads lines up to a delimiter of bounds or the end of input.
func (p *parser) skipBody(bounds []string) stop {
	for {
		l, ok := p.lr.next()
		if !ok {
			return p.eofStop()
		}
		if st, ok := matchDelim(l, bounds); ok {
			return st
		}
	}
}

// finish sets the body offsets and line count of pt from where its body
// started and how it ended. Before a delimiter, the line ending preceding
// it belongs to the delimiter, not to the body (RFC 2046 §5.1.1).
func (p *parser) finish(pt *Part, bodyStart, lfBody int64, st stop) {
	pt.BodyStart = bodyStart
	if st.eof {
		pt.End = st.at
		pt.Lines = st.lf - lfBody
		if pt.End > bodyStart && st.prevEOL == 0 {
			pt.Lines++ // a last line without a line ending
		}
		return
	}
	end := st.at - int64(st.prevEOL)
	// A child (or enclosed message) can end past end only in one broken
	// case, a delimiter right after the previous delimiter line, where the
	// line ending is both: the parent then keeps it too, to contain the
	// child.
	last := bodyStart
	if n := len(pt.Children); n > 0 {
		last = max(last, pt.Children[n-1].End)
	}
	if pt.Message != nil {
		last = max(last, pt.Message.End)
	}
	switch {
	case last >= st.at:
		pt.End, pt.Lines = last, st.lf-lfBody
		if last == bodyStart {
			pt.Lines = 0
		}
	case end < last:
		pt.End, pt.Lines = last, 0
		if last > bodyStart {
			pt.Lines = st.lf - lfBody // last is inside a CRLF: count it
		}
	case end <= bodyStart:
		pt.End, pt.Lines = bodyStart, 0
	default:
		pt.End = end
		pt.Lines = st.lf - 1 - lfBody
		if !st.prevEmpty {
			pt.Lines++
		}
	}
}
