package mime7bit

import (
	"bufio"
	"errors"
	"io"
	"strings"

	"github.com/ternmail/tern/internal/msginfo"
)

// keptLine is how much of a line eachLine shows; msginfo matches
// delimiters on as much, so both agree on where parts end.
const keptLine = 64 << 10

// line is one line of src: LF ends it, a CR before the LF is part of the
// line ending, as msginfo reads them.
type line struct {
	start int64
	size  int64  // octets, line ending included
	eol   int    // 2 (CRLF), 1 (LF) or 0 (end of range)
	b     []byte // the content without line ending, at most keptLine octets
}

// eachLine calls fn with each line of src[from:to] until fn returns
// false. The line's b is valid only during the call.
func (c *pass) eachLine(from, to int64, fn func(line) bool) error {
	if to <= from {
		return nil
	}
	br := c.br
	br.Reset(io.NewSectionReader(c.src, from, to-from))
	off := from
	for {
		l := line{start: off}
		keep := c.keep[:0]
		var prev, last byte
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			l.size += int64(len(chunk))
			if room := keptLine - len(keep); room > 0 {
				keep = append(keep, chunk[:min(room, len(chunk))]...)
			}
			for _, b := range chunk[max(0, len(chunk)-2):] {
				prev, last = last, b
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && err != io.EOF {
			return err
		}
		if l.size == 0 {
			return nil
		}
		if last == '\n' {
			l.eol = 1
			if l.size > 1 && prev == '\r' {
				l.eol = 2
			}
		}
		c.keep = keep
		l.b = keep[:min(int64(len(keep)), l.size-int64(l.eol))]
		off += l.size
		if !fn(l) || err == io.EOF {
			return nil
		}
	}
}

// headerInfo is what the conversion needs to know of a part's header.
type headerInfo struct {
	hasMIMEVersion bool
	hasContentType bool
	ctype          string // the declared media type, lower case
	ctValue        string // the Content-Type field, unfolded, its first KiB
}

// composite reports whether the declared type may only have an identity
// encoding (RFC 2045 §6.4, RFC 2046 §5.2.2.1, §5.2.3.1, §5.2.1).
func (h headerInfo) composite() bool {
	switch h.ctype {
	case "message/rfc822", "message/partial", "message/external-body":
		return true
	}
	return strings.HasPrefix(h.ctype, "multipart/")
}

// scanHeader checks that pt's header can travel as it is and reads what
// the conversion needs from it.
func (c *pass) scanHeader(pt *msginfo.Part) (headerInfo, error) {
	var h headerInfo
	var bad error
	inType := false
	var ctype []byte
	err := c.eachLine(pt.HeaderStart, pt.BodyStart, func(l line) bool {
		if bad = c.checkHeaderLine(l); bad != nil {
			return false
		}
		if len(l.b) > 0 && (l.b[0] == ' ' || l.b[0] == '\t') {
			if inType && len(ctype) < 1024 {
				ctype = append(ctype, l.b...)
			}
			return true
		}
		name, value, ok := field(l.b)
		inType = false
		switch {
		case !ok:
		case strings.EqualFold(name, "MIME-Version"):
			h.hasMIMEVersion = true
		case strings.EqualFold(name, "Content-Type") && !h.hasContentType:
			h.hasContentType, inType = true, true
			ctype = append(ctype, value...)
		}
		return true
	})
	if err == nil {
		err = bad
	}
	t := strings.TrimLeft(string(ctype), " \t")
	if i := strings.IndexAny(t, "; \t"); i >= 0 {
		t = t[:i]
	}
	h.ctype = strings.ToLower(t)
	h.ctValue = string(ctype)
	return h, err
}

// checkHeaderLine refuses what the header of a 7-bit message may not
// hold: a line over 998 octets, NUL, a bare CR, and 8-bit octets unless
// the peer takes UTF-8 headers.
func (c *pass) checkHeaderLine(l line) error {
	if l.size-int64(l.eol) > maxLine {
		return unconvertible("header line of %d octets", l.size-int64(l.eol))
	}
	for _, b := range l.b {
		switch {
		case b == 0 || b == '\r':
			return unconvertible("header holds a NUL or a bare CR")
		case b >= 0x80 && !c.opts.UTF8Header:
			return unconvertible("8-bit header field, which needs SMTPUTF8")
		}
	}
	return nil
}

// field splits a header field line as msginfo does: a name of bytes
// other than controls, space and colon, optional whitespace, a colon.
func field(b []byte) (name string, value []byte, ok bool) {
	i := 0
	for i < len(b) && b[i] > ' ' && b[i] != ':' && b[i] != 0x7f {
		i++
	}
	j := i
	for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
		j++
	}
	if i == 0 || j >= len(b) || b[j] != ':' {
		return "", nil, false
	}
	return string(b[:i]), b[j+1:], true
}

// writeHeader writes pt's header with CRLF line endings, the changes of
// p, and the empty line that ends it (added when the original had none:
// a part whose header ran into its body or its end).
func (c *pass) writeHeader(w *bufio.Writer, pt *msginfo.Part, p *plan) error {
	inCTE, replaced := false, false
	err := c.eachLine(pt.HeaderStart, pt.BodyStart, func(l line) bool {
		if len(l.b) == 0 && l.eol > 0 {
			return false // the empty line: the fields end here
		}
		if len(l.b) == 0 || l.b[0] != ' ' && l.b[0] != '\t' {
			name, _, ok := field(l.b)
			inCTE = ok && strings.EqualFold(name, "Content-Transfer-Encoding")
			if inCTE && p.cte != "" && !replaced {
				// In place of the first; msginfo reads only that one,
				// and the others go so no reader sees two.
				w.WriteString("Content-Transfer-Encoding: " + p.cte + "\r\n")
				replaced = true
			}
		}
		if !inCTE || p.cte == "" {
			w.Write(l.b)
			w.WriteString("\r\n")
		}
		return true
	})
	if p.addMV {
		w.WriteString("MIME-Version: 1.0\r\n")
	}
	if p.addType != "" {
		w.WriteString("Content-Type: " + p.addType + "\r\n")
	}
	if p.cte != "" && !replaced {
		w.WriteString("Content-Transfer-Encoding: " + p.cte + "\r\n")
	}
	w.WriteString("\r\n")
	return err
}
