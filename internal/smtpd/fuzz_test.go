package smtpd

import (
	"fmt"
	"os"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// pipeListener hands net.Pipe connections to a Server.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// notifyConn signals when the server closes its end.
type notifyConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *notifyConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// FuzzSession feeds arbitrary client input through the whole session
// loop of both doors (go-smtp, our wrapper, session, Data, deliver into a
// real store). It fails on panics, on sessions that do not end once the
// client has gone, and on connections the limiter never gets back.
// The first byte picks the door: even MX, odd submission (plaintext AUTH
// allowed, as there is no TLS in a pipe).
func FuzzSession(f *testing.F) {
	short := func(c *Config) {
		c.CommandTimeout = time.Second
		c.DataTimeout = time.Second
		c.WriteTimeout = time.Second
		c.MaxMessageBytes = 64 << 10
		c.MaxConnsPerIP = 4
		c.MaxRecipients = 20
	}
	mx := newEnv(f, envOpts{mode: MX, cfg: short, quiet: true})
	sub := newEnv(f, envOpts{mode: Submission, quiet: true, cfg: func(c *Config) {
		short(c)
		c.TLS = nil
		c.AllowPlaintextAuth = true
	}})
	lns := [2]*pipeListener{newPipeListener(), newPipeListener()}
	for i, e := range []*testEnv{mx, sub} {
		go e.srv.Serve(lns[i])
		f.Cleanup(func() { lns[i].Close() })
	}

	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		door := 0
		if len(input) > 0 && input[0]&1 == 1 {
			door = 1
		}
		cli, srvEnd := net.Pipe()
		nc := &notifyConn{Conn: srvEnd, closed: make(chan struct{})}
		select {
		case lns[door].ch <- nc:
		case <-time.After(5 * time.Second):
			t.Fatal("server not accepting")
		}
		go io.Copy(io.Discard, cli)
		cli.SetWriteDeadline(time.Now().Add(3 * time.Second))
		if len(input) > 0 {
			cli.Write(input[1:])
		}
		cli.Close()
		t0 := time.Now()
		defer func() {
			if d := time.Since(t0); d > 500*time.Millisecond {
				os.WriteFile(fmt.Sprintf("/tmp/slow-%d", time.Now().UnixNano()), []byte(fmt.Sprintf("%v %q", d, input)), 0o644)
			}
		}()
		select {
		case <-nc.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end after the client closed")
		}
	})
}

// fuzzSeeds are also in testdata/fuzz/FuzzSession, with crashers found.
var fuzzSeeds = []string{
	"\x00EHLO a\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
	"\x00EHLO a\r\nMAIL FROM:<s@remote.test> BODY=BINARYMIME\r\nRCPT TO:<alice@example.org>\r\nBDAT 5\r\nab\n\rcBDAT 0 LAST\r\nQUIT\r\n",
	"\x00EHLO a\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nx\n.\nMAIL FROM:<e@x>\r\n\r\n.\r\n",
	"\x00HELO a\r\nMAIL FROM:<s@remote.test> SIZE=1 RET=HDRS ENVID=x\r\nRCPT TO:<@a,@b:alice@example.org> NOTIFY=SUCCESS ORCPT=rfc822;a@b\r\nRCPT TO:<a%b@example.org>\r\nRSET\r\nVRFY x\r\nNOOP\r\n",
	"\x00EHLO a\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nBDAT 10\r\n0123456789RSET\r\nBDAT 3 LAST\r\nabc",
	"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"\x00EHLO a\r\nSTARTTLS\r\nEHLO b\r\n",
	"\x01EHLO a\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<x@foreign.test>\r\nDATA\r\nFrom: alice@example.org\r\n\r\nhi\r\n.\r\n",
	"\x01EHLO a\r\nAUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS5vcmc=\r\nd3Jvbmc=\r\nAUTH PLAIN =\r\nAUTH PLAIN\r\n*\r\nMAIL FROM:<>\r\n",
	"\x00EHLO a\r\nMAIL FROM:<s@bücher.test> SMTPUTF8\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nReceived: x\r\nReceived: y\r\n\r\n\r\n.\r\n",
}
