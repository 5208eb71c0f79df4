package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
)

// pop3Client is a minimal RFC 1939 client. Multi-line replies are read
// line by line without keeping them; only their size is counted.
type pop3Client struct {
	*conn
}

// status checks a POP3 status line: "+OK ..." or "-ERR ...".
func pop3Status(line []byte) (ok bool, text string, err error) {
	switch {
	case bytes.HasPrefix(line, []byte("+OK")):
		return true, string(bytes.TrimPrefix(line[3:], []byte(" "))), nil
	case bytes.HasPrefix(line, []byte("-ERR")):
		return false, string(bytes.TrimPrefix(line[4:], []byte(" "))), nil
	}
	return false, "", fmt.Errorf("bad POP3 status line %.80q", line)
}

// cmd sends line and reads a single-line reply; -ERR becomes a replyError
// named by verb.
func (c *pop3Client) cmd(verb, line string) (string, error) {
	if err := c.send(line); err != nil {
		return "", &opError{Op: "write", Err: err}
	}
	return c.status(verb)
}

func (c *pop3Client) status(verb string) (string, error) {
	c.deadline()
	line, err := c.readLine()
	if err != nil {
		return "", &opError{Op: "read", Err: err}
	}
	ok, text, err := pop3Status(line)
	if err != nil {
		return "", &opError{Op: "read", Err: err}
	}
	if !ok {
		return text, &replyError{Cmd: "POP3 " + verb, Code: "-ERR", Text: text}
	}
	return text, nil
}

// multi sends line and skips a multi-line reply up to the terminating
// "CRLF.CRLF" (RFC 1939 §3), returning the size of the body on the wire.
func (c *pop3Client) multi(verb, line string) (octets int, err error) {
	if _, err := c.cmd(verb, line); err != nil {
		return 0, err
	}
	c.deadline()
	n, err := skipDotBody(c.r)
	if err != nil {
		return n, &opError{Op: "read", Err: err}
	}
	return n, nil
}

// skipDotBody consumes a dot-terminated body from r, which is positioned at
// the start of a line, through the terminating ".CRLF" line. It returns the
// body's length on the wire without the terminator (dot-stuffing
// included). It searches whole buffers with bytes.Index instead of reading
// line by line: RETR of 100 MB/s would otherwise cost the tool a core.
// A body line "." is sent stuffed as "..", so "\n.\r\n" only ends a body.
func skipDotBody(r *bufio.Reader) (int, error) {
	term := []byte("\n.\r\n")
	var tailBuf [3]byte
	tail := append(tailBuf[:0], '\n') // the previous line's end
	total := 0
	for {
		if _, err := r.Peek(1); err != nil {
			return total, err
		}
		chunk, _ := r.Peek(r.Buffered())
		// A terminator that starts in the tail of the previous chunk.
		var join [6]byte
		j := append(append(join[:0], tail...), chunk[:min(len(chunk), 3)]...)
		if i := bytes.Index(j, term); i >= 0 && i < len(tail) {
			end := i + len(term) - len(tail)
			r.Discard(end)
			return total + end - 3, nil
		}
		if i := bytes.Index(chunk, term); i >= 0 {
			end := i + len(term)
			r.Discard(end)
			return total + end - 3, nil
		}
		if len(chunk) >= 3 {
			tail = append(tail[:0], chunk[len(chunk)-3:]...)
		} else {
			tail = append(tail, chunk...)
			tail = tail[max(0, len(tail)-3):]
		}
		total += len(chunk)
		r.Discard(len(chunk))
	}
}

// parseStat reads "+OK 3 4821" (the text after +OK) as count and size.
func parseStat(text string) (count, size int, err error) {
	f := bytes.Fields([]byte(text))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("bad STAT reply %q", text)
	}
	count, err1 := strconv.Atoi(string(f[0]))
	size, err2 := strconv.Atoi(string(f[1]))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad STAT reply %q", text)
	}
	return count, size, nil
}

// dialPOP3 connects, reads the greeting and does STLS (RFC 2595) when
// asked.
func dialPOP3(ctx context.Context, o DialOpts) (*pop3Client, error) {
	cn, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	c := &pop3Client{conn: cn}
	if _, err := c.status("greeting"); err != nil {
		c.Close()
		return nil, err
	}
	if o.TLS == TLSStart {
		if _, err := c.cmd("STLS", "STLS"); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.startTLS(ctx, o); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// login authenticates with USER/PASS (RFC 1939 §7).
func (c *pop3Client) login(user, pass string) error {
	if _, err := c.cmd("USER", "USER "+user); err != nil {
		return err
	}
	_, err := c.cmd("PASS", "PASS "+pass)
	return err
}
