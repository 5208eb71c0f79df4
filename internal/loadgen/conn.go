package loadgen

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// TLSMode is how a connection gets TLS: not at all, implicitly on connect
// (IMAPS/POP3S/SMTPS), or by STARTTLS/STLS after the greeting.
type TLSMode int

const (
	TLSNone TLSMode = iota
	TLSImplicit
	TLSStart
)

// DialOpts are shared by every protocol client.
type DialOpts struct {
	Addr     string
	TLS      TLSMode
	Insecure bool          // skip certificate verification (self-signed test servers)
	Timeout  time.Duration // per operation I/O deadline and dial timeout
}

func (o DialOpts) tlsConfig() *tls.Config {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		host = o.Addr
	}
	return &tls.Config{ServerName: host, InsecureSkipVerify: o.Insecure}
}

// conn is a buffered connection with the line reader all three protocols
// share. Writes are buffered and flushed once per command.
type conn struct {
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	long    []byte // reused for lines longer than the read buffer
}

const bufSize = 64 << 10

func dial(ctx context.Context, o DialOpts) (*conn, error) {
	d := net.Dialer{Timeout: o.Timeout}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, &opError{Op: "dial", Err: err}
	}
	if o.TLS == TLSImplicit {
		tc := tls.Client(nc, o.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, &opError{Op: "tls", Err: err}
		}
		nc = tc
	}
	return newConn(nc, o.Timeout), nil
}

func newConn(nc net.Conn, timeout time.Duration) *conn {
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, bufSize), w: bufio.NewWriterSize(nc, bufSize), timeout: timeout}
}

// startTLS wraps the connection after a successful STARTTLS/STLS reply.
func (c *conn) startTLS(ctx context.Context, o DialOpts) error {
	if c.r.Buffered() > 0 {
		// RFC 3207 §4.2 / RFC 2595 §3.1: nothing may follow the reply in
		// plaintext; data here would be a command injection.
		return &opError{Op: "starttls", Err: errors.New("server sent data after the STARTTLS reply")}
	}
	tc := tls.Client(c.nc, o.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		return &opError{Op: "tls", Err: err}
	}
	c.nc = tc
	c.r.Reset(tc)
	c.w.Reset(tc)
	return nil
}

// deadline arms the I/O deadline for one operation.
func (c *conn) deadline() {
	if c.timeout > 0 {
		c.nc.SetDeadline(time.Now().Add(c.timeout))
	}
}

// send writes one command line (CRLF added) and flushes.
func (c *conn) send(line string) error {
	c.deadline()
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	return c.w.Flush()
}

// readLine returns the next line without its CRLF (or bare LF). The slice is
// only valid until the next read.
func (c *conn) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		c.long = append(c.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = c.r.ReadSlice('\n')
			c.long = append(c.long, line...)
		}
		line = c.long
	}
	if err != nil {
		if err == bufio.ErrBufferFull {
			err = nil
		} else {
			return nil, err
		}
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func (c *conn) Close() error { return c.nc.Close() }

// opError is a transport failure (dial, TLS, I/O) during Op.
type opError struct {
	Op  string
	Err error
}

func (e *opError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *opError) Unwrap() error { return e.Err }

// replyError is a protocol-level refusal: the server answered Cmd with Code
// (SMTP reply code, or "NO"/"BAD"/"-ERR").
type replyError struct {
	Cmd  string
	Code string
	Text string
}

func (e *replyError) Error() string { return fmt.Sprintf("%s %s %s", e.Cmd, e.Code, e.Text) }

// reason turns an error into a short, countable key: "RCPT 550",
// "IMAP LOGIN NO", "dial: connection refused", "timeout".
func reason(err error) string {
	var re *replyError
	if errors.As(err, &re) {
		return re.Cmd + " " + re.Code
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *opError
	prefix := "io"
	if errors.As(err, &oe) {
		prefix = oe.Op
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return prefix + ": connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return prefix + ": connection reset"
	case errors.Is(err, syscall.EPIPE):
		return prefix + ": broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return prefix + ": no free local port"
	case errors.Is(err, syscall.EMFILE):
		return prefix + ": too many open files"
	}
	msg := err.Error()
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return msg
}

// ParseUsers expands a user spec: "bench%d@bench.test:1-100" gives
// bench1@bench.test … bench100@bench.test; otherwise the spec is a
// comma-separated list of names.
func ParseUsers(spec string) ([]string, error) {
	if spec == "" {
		return nil, errors.New("empty user spec")
	}
	if i := strings.LastIndexByte(spec, ':'); i >= 0 && strings.Contains(spec[:i], "%d") {
		lo, hi, ok := strings.Cut(spec[i+1:], "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if !ok || err1 != nil || err2 != nil || a > b || a < 0 {
			return nil, fmt.Errorf("user spec %q: want PATTERN:FIRST-LAST with FIRST <= LAST", spec)
		}
		out := make([]string, 0, b-a+1)
		for n := a; n <= b; n++ {
			out = append(out, strings.Replace(spec[:i], "%d", strconv.Itoa(n), 1))
		}
		return out, nil
	}
	var out []string
	for u := range strings.SplitSeq(spec, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("user spec %q names nobody", spec)
	}
	return out, nil
}
