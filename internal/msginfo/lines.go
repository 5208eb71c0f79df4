package msginfo

import (
	"bufio"
	"errors"
	"io"
)

// maxLine is how much of one line is kept for inspection. Longer lines are
// still counted byte for byte; only their content past maxLine is not seen,
// which matters for nothing but absurdly long header fields.
const maxLine = 64 << 10

// line is one line of the message. Lines end at LF; a CR before it is part
// of the line ending, so bare-LF and CRLF mail have the same structure.
type line struct {
	start    int64  // offset of the first byte
	b        []byte // content without the line ending, at most maxLine bytes
	eol      int    // length of the line ending: 2 (CRLF), 1 (LF) or 0 (EOF)
	end      int64  // offset just past the line ending
	lfBefore int64  // LF bytes in the message before start

	// About the line before this one, which a delimiter line needs: the
	// CRLF preceding a boundary belongs to the boundary (RFC 2046 §5.1.1).
	prevEOL   int
	prevEmpty bool
}

// lineReader reads a message line by line and keeps the counts Part needs.
// Slices it returns are valid until the next call to next.
type lineReader struct {
	br      *bufio.Reader
	off     int64 // offset of the next unread byte
	lf      int64 // LF bytes consumed
	scratch []byte
	err     error // first read error other than io.EOF

	lastEOL   int // line ending of the last line returned
	lastEmpty bool

	pending bool // unread was called: next returns cur again
	cur     line
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 16<<10)}
}

// next returns the next line, or false at the end of input or on error.
func (lr *lineReader) next() (line, bool) {
	if lr.pending {
		lr.pending = false
		return lr.cur, true
	}
	if lr.err != nil {
		return line{}, false
	}
	l := line{start: lr.off, lfBefore: lr.lf, prevEOL: lr.lastEOL, prevEmpty: lr.lastEmpty}
	b, err := lr.br.ReadSlice('\n')
	n := len(b)
	eol := lineEnding(b, 0)
	if errors.Is(err, bufio.ErrBufferFull) {
		b, n, eol, err = lr.readLong(b)
	}
	if err != nil && err != io.EOF {
		lr.err = err
		return line{}, false
	}
	if n == 0 {
		return line{}, false
	}
	lr.off += int64(n)
	l.end = lr.off
	if eol > 0 {
		lr.lf++
	}
	l.eol = eol
	l.b = b[:min(len(b), n-eol)]
	lr.lastEOL, lr.lastEmpty = l.eol, n == eol
	lr.cur = l
	return l, true
}

// readLong reads the rest of a line longer than the buffer, given its first
// chunk. It returns the first maxLine bytes of the line, the line's full
// length and line ending.
func (lr *lineReader) readLong(first []byte) ([]byte, int, int, error) {
	lr.scratch = append(lr.scratch[:0], first...)
	n := len(first)
	prev := first[len(first)-1]
	eol := 0
	var err error = bufio.ErrBufferFull
	for errors.Is(err, bufio.ErrBufferFull) {
		var b []byte
		b, err = lr.br.ReadSlice('\n')
		n += len(b)
		if room := maxLine - len(lr.scratch); room > 0 {
			lr.scratch = append(lr.scratch, b[:min(room, len(b))]...)
		}
		if len(b) > 0 {
			eol = lineEnding(b, prev)
			prev = b[len(b)-1]
		}
	}
	return lr.scratch, n, eol, err
}

// lineEnding returns the length of the line ending at the end of b; prev is
// the byte before b, for a CR in the previous chunk.
func lineEnding(b []byte, prev byte) int {
	switch {
	case len(b) == 0 || b[len(b)-1] != '\n':
		return 0
	case len(b) >= 2 && b[len(b)-2] == '\r', len(b) == 1 && prev == '\r':
		return 2
	}
	return 1
}

// unread makes the next call to next return the line just returned.
func (lr *lineReader) unread() { lr.pending = true }
