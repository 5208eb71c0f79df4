package pop3d

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
	"github.com/ternmail/tern/internal/testenv"
)

const (
	testDomain = "example.test"
	testUser   = "alice@example.test"
	testPass   = testenv.Password
)

// env is a POP3 server on 127.0.0.1:0 over a real SQLite store in a
// temporary directory, with one account.
type env struct {
	t     testing.TB
	st    *sqlite.Store
	del   *deliver.Deliverer
	srv   *Server
	addr  string // plain (STLS) listener
	tls   string // implicit-TLS listener, when cfg.TLS is set
	acct  store.Account
	inbox store.Mailbox
	cert  *x509.Certificate
}

// newEnv starts a server; cfg.Hostname defaults to pop.example.test and
// cfg.TLS, when tlsOn, to a fresh self-signed certificate.
func newEnv(t testing.TB, cfg Config, tlsOn bool) *env {
	t.Helper()
	ctx := context.Background()
	log := testLogger(t)
	st, m := testenv.Store(t, log, testDomain)
	acct := testenv.Users(t, m, testUser)[0]
	inbox, err := st.GetMailbox(ctx, acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, acct: acct, inbox: inbox,
		del: deliver.New(st, deliver.Config{MaxMessageBytes: 64 << 20}, log)}
	if cfg.Hostname == "" {
		cfg.Hostname = "pop.example.test"
	}
	if tlsOn {
		cfg.TLS, e.cert = selfSigned(t)
	}
	a := auth.New(st, auth.Config{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}, log)
	e.srv, err = New(cfg, Deps{Store: st, Auth: a, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e.addr = testenv.Serve(t, e.srv.Serve, ErrServerClosed)
	if tlsOn {
		e.tls = testenv.Serve(t, e.srv.ServeTLS, ErrServerClosed)
	}
	testenv.Shutdown(t, e.srv.Shutdown)
	return e
}

// put delivers body into the account's INBOX and returns its UID.
func (e *env) put(body string) uint32 {
	e.t.Helper()
	d, err := e.del.Append(context.Background(), e.acct.ID, "INBOX", nil, time.Time{}, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	return d.UID
}

// uids lists the INBOX as an IMAP session would see it.
func (e *env) uids() []uint32 {
	e.t.Helper()
	ms, err := e.st.ListMessages(context.Background(), e.inbox.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	var u []uint32
	for _, m := range ms {
		u = append(u, m.UID)
	}
	return u
}

// client is a raw-socket POP3 client for transcripts.
type client struct{ *testenv.LineConn }

func (e *env) dial() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	cl := newClient(e.t, c)
	cl.Expect("+OK ")
	return cl
}

// dialRaw connects without reading the greeting.
func (e *env) dialRaw() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return newClient(e.t, c)
}

func newClient(t testing.TB, c net.Conn) *client {
	return &client{testenv.NewLineConn(t, c, 20*time.Second)}
}

// login dials and logs in with USER/PASS.
func (e *env) login() *client {
	e.t.Helper()
	c := e.dial()
	c.cmd("USER "+testUser, "+OK")
	c.cmd("PASS "+testPass, "+OK")
	return c
}

// cmd sends a command and checks the first line of the reply.
func (c *client) cmd(line, prefix string) string {
	c.T.Helper()
	c.Send(line)
	return c.Expect(prefix)
}

// multi reads the lines of a multi-line reply up to ".", undoing
// dot-stuffing.
func (c *client) multi() []string {
	c.T.Helper()
	var lines []string
	for {
		l := c.ReadLine()
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

// body reads a multi-line reply as raw bytes, undoing dot-stuffing, with
// the line endings as sent.
func (c *client) body() []byte {
	c.T.Helper()
	var b bytes.Buffer
	for {
		l, err := c.R.ReadBytes('\n')
		if err != nil {
			c.T.Fatalf("read body: %v", err)
		}
		if string(l) == ".\r\n" {
			return b.Bytes()
		}
		b.Write(bytes.TrimPrefix(l, []byte(".")))
	}
}

// closed checks that the server closed the connection.
func (c *client) closed() {
	c.T.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.R.ReadString('\n'); err == nil {
		c.T.Fatalf("connection still open, got %q", l)
	}
}

func selfSigned(t testing.TB) (*tls.Config, *x509.Certificate) {
	t.Helper()
	return testenv.SelfSigned(t, "pop.example.test")
}

// clientTLS trusts the test certificate.
func (e *env) clientTLS() *tls.Config {
	return testenv.ClientTLS(e.cert, "pop.example.test")
}

// testLogger logs through t, failing the test on a logged session panic.
func testLogger(t testing.TB) *slog.Logger { return testenv.Logger(t) }
