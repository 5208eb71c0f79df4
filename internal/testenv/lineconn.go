package testenv

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// LineConn is the raw socket of a test client for a line protocol (IMAP,
// POP3): it writes and reads CRLF-terminated lines and fails the test on
// any error. A door's transcript client embeds it and adds the
// protocol's replies.
type LineConn struct {
	T    testing.TB
	Conn net.Conn
	R    *bufio.Reader // reads Conn
}

// NewLineConn wraps c, which must answer within timeout and is closed
// when the test ends.
func NewLineConn(t testing.TB, c net.Conn, timeout time.Duration) *LineConn {
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(timeout))
	return &LineConn{T: t, Conn: c, R: bufio.NewReader(c)}
}

// Send writes line and CRLF.
func (c *LineConn) Send(line string) {
	c.T.Helper()
	if _, err := c.Conn.Write([]byte(line + "\r\n")); err != nil {
		c.T.Fatal(err)
	}
}

// ReadLine reads one line, which must end in CRLF, and returns it
// without.
func (c *LineConn) ReadLine() string {
	c.T.Helper()
	l, err := c.R.ReadString('\n')
	if err != nil {
		c.T.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.T.Fatalf("line %q does not end with CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// Expect reads a line and checks its prefix.
func (c *LineConn) Expect(prefix string) string {
	c.T.Helper()
	l := c.ReadLine()
	if !strings.HasPrefix(l, prefix) {
		c.T.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}
