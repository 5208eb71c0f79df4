package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmail/tern/internal/limits"
)

// listener wraps the caller's listener: it applies the connection limits
// before go-smtp sees a connection, and wraps each one in a conn.
type listener struct {
	net.Listener
	srv *Server
	tls *tls.Config // implicit TLS (465) when set
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := l.srv.newConn(raw, l.tls != nil)
		if c == nil {
			continue // refused and being closed
		}
		if l.tls != nil {
			tc := tls.Server(c, l.tls)
			c.setTLS(tc)
			return tc, nil
		}
		return c, nil
	}
}

// newConn counts raw against the limits and wraps it, or refuses it with
// 421 (RFC 5321 §3.8) and returns nil.
func (s *Server) newConn(raw net.Conn, implicitTLS bool) *conn {
	remote := limits.ClientIP(raw.RemoteAddr())
	id := s.connID.Add(1)
	log := s.log.With("conn", id, "remote", raw.RemoteAddr().String())
	refuse := func(msg string) {
		log.Info("connection refused", "reason", msg)
		go func() {
			if !implicitTLS { // a TLS client could not read a plain reply
				raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(raw, msg+"\r\n")
			}
			raw.Close()
		}()
	}
	release, ok := s.limiter.Acquire(remote)
	if !ok {
		refuse("421 4.7.0 Too many connections, try again later")
		return nil
	}
	c := &conn{Conn: raw, srv: s, log: log, remote: remote, release: release, implicitTLS: implicitTLS}
	if !s.track(c) {
		release()
		refuse("421 4.3.2 Service shutting down, try again later")
		return nil
	}
	log.Debug("connection opened")
	return c
}

// conn is the connection under go-smtp (and under TLS when there is
// TLS). It does what go-smtp offers no hook for: it refuses HTTP
// requests, TLS on a plain port and early talkers, keeps the data timeout
// alive block by block, closes after an error limit and tracks whether a
// transaction is in progress for a graceful Shutdown.
type conn struct {
	net.Conn
	srv         *Server
	log         *slog.Logger
	remote      netip.Addr
	release     func()
	implicitTLS bool

	// Read side: only go-smtp's connection goroutine reads.
	sniffed bool
	timeout error // a read timed out: every later read fails with it

	readFailed      atomic.Bool // a read from the client failed (EOF included)
	greeted         atomic.Bool // the banner was written
	inData          atomic.Bool // message data is being read
	closeAfterWrite atomic.Bool // the next reply is the last
	errors          atomic.Int32

	mu      sync.Mutex
	busy    bool      // inside a mail transaction (MAIL .. end of data or RSET)
	tlsConn *tls.Conn // set once TLS is up, to write replies outside go-smtp
	closed  bool
}

// httpMethods start the request line of a client that is speaking HTTP
// to us.
var httpMethods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("HEAD "), []byte("PUT "), []byte("DELETE "),
	[]byte("OPTIONS "), []byte("CONNECT "), []byte("PATCH "), []byte("TRACE "),
}

func (c *conn) Read(b []byte) (int, error) {
	if c.timeout != nil {
		return 0, c.timeout
	}
	if c.inData.Load() {
		// RFC 5321 §4.5.3.2.5: the data timeout runs per block, not for
		// the whole message; go-smtp set its deadline once, at DATA.
		c.Conn.SetReadDeadline(time.Now().Add(c.srv.cfg.DataTimeout))
	}
	var n int
	var err error
	if c.sniffed || c.implicitTLS {
		n, err = c.Conn.Read(b)
	} else {
		c.sniffed = true
		n, err = c.sniff(b)
	}
	if err != nil {
		c.readFailed.Store(true) // for cutReader
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The client is too slow (RFC 5321 §4.5.3.2): the session ends.
		// The error must stick: go-smtp reads commands with
		// bufio.Reader.ReadLine, which drops an error that ends a
		// partial line and returns the part as a whole line, and then
		// arms a fresh deadline for the next one; a client dribbling a
		// line byte by byte (slowloris) was never cut off.
		c.log.Info("client timed out: closing")
		c.timeout = err
	}
	return n, err
}

// sniff reads the first bytes a plain client sends and refuses clients
// that are not speaking SMTP: an HTTP request gets one 500 reply, a TLS
// ClientHello (implicit TLS against a STARTTLS port) is closed at once.
// go-smtp would answer each HTTP header line with 501 instead.
func (c *conn) sniff(b []byte) (int, error) {
	n := 0
	for n < len(b) && n < 8 && bytes.IndexByte(b[:n], '\n') < 0 {
		m, err := c.Conn.Read(b[n:])
		n += m
		if err != nil {
			if n > 0 && c.notSMTP(b[:n]) {
				return 0, io.EOF
			}
			return n, err
		}
		if n > 0 && b[0] == 0x16 {
			break
		}
	}
	if c.notSMTP(b[:n]) {
		return 0, io.EOF
	}
	return n, nil
}

func (c *conn) notSMTP(p []byte) bool {
	if len(p) > 0 && p[0] == 0x16 { // TLS handshake record
		c.log.Info("TLS client on a plain SMTP port: closing")
		c.Close()
		return true
	}
	for _, m := range httpMethods {
		if bytes.HasPrefix(p, m) {
			c.log.Info("HTTP request on an SMTP port: closing")
			c.goodbye("500 5.5.1 This is an SMTP server, not an HTTP server")
			c.Close()
			return true
		}
	}
	return false
}

func (c *conn) Write(b []byte) (int, error) {
	if !c.greeted.Swap(true) && !c.implicitTLS && c.srv.cfg.GreetDelay > 0 && c.talkedEarly() {
		c.log.Info("client talked before the banner: closing")
		c.Conn.Write([]byte("554 5.5.0 Protocol error: wait for the greeting before sending (RFC 5321 §4.3.1)\r\n"))
		c.Close()
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(b)
	if c.closeAfterWrite.Load() {
		c.Close()
	}
	return n, err
}

// talkedEarly waits GreetDelay for input before the banner is written.
func (c *conn) talkedEarly() bool {
	c.Conn.SetReadDeadline(time.Now().Add(c.srv.cfg.GreetDelay))
	defer c.Conn.SetReadDeadline(time.Time{})
	var one [1]byte
	n, _ := c.Conn.Read(one[:])
	return n > 0
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	c.mu.Unlock()
	if first {
		c.release()
		c.srv.untrack(c)
		c.log.Debug("connection closed")
	}
	return err
}

func (c *conn) setTLS(tc *tls.Conn) {
	c.mu.Lock()
	c.tlsConn = tc
	c.mu.Unlock()
}

// goodbye writes a last reply outside go-smtp, through TLS when it is up.
func (c *conn) goodbye(line string) {
	c.mu.Lock()
	tc := c.tlsConn
	c.mu.Unlock()
	var w io.Writer = c.Conn
	if tc != nil {
		w = tc
	}
	c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(w, line+"\r\n")
}

// setBusy marks the start or end of a mail transaction. At the end of one
// while the server drains, the connection is closed with 421: the reply
// to the message has been written already (go-smtp resets the session
// after replying).
func (c *conn) setBusy(busy bool) {
	c.mu.Lock()
	c.busy = busy
	c.mu.Unlock()
	if !busy && c.srv.draining.Load() {
		c.goodbye("421 4.3.2 Service shutting down, try again later")
		c.Close()
	}
}

// closeIfIdle closes the connection with 421 unless a transaction is in
// progress (RFC 5321 §3.8).
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	busy, closed := c.busy, c.closed
	c.mu.Unlock()
	if busy || closed {
		return
	}
	c.goodbye("421 4.3.2 Service shutting down, try again later")
	c.Close()
}

// countError counts a refused command and reports whether the client has
// used up its allowance; the reply then written is the connection's last.
func (c *conn) countError() bool {
	if int(c.errors.Add(1)) < c.srv.cfg.MaxErrors {
		return false
	}
	c.closeAfterWrite.Store(true)
	c.log.Info("too many errors: closing", "errors", c.srv.cfg.MaxErrors)
	return true
}

// connOf finds our conn under what go-smtp holds (a *tls.Conn after
// STARTTLS or on 465).
func connOf(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// errNoConn is answered if go-smtp ever hands us a connection that did
// not come through our listener.
var errNoConn = reply(421, 4, 3, 0, "Internal error, closing connection")
