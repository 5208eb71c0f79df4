package smtpd

import (
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

	// Seeds (and any crasher found) live in testdata/fuzz/FuzzSession.
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
		select {
		case <-nc.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end after the client closed")
		}
	})
}
