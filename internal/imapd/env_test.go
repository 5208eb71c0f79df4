package imapd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
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

// env is an IMAP server on 127.0.0.1:0 over a real SQLite store in a
// temporary directory, with one account.
type env struct {
	t       testing.TB
	st      *sqlite.Store
	del     *deliver.Deliverer
	srv     *Server
	addr    string // plain listener (STARTTLS when TLS is on)
	tlsAddr string // implicit TLS listener
	acct    store.Account
	cert    *x509.Certificate
}

type envOpts struct {
	cfg   Config
	tls   bool
	plain bool         // AllowPlaintextAuth
	log   *slog.Logger // nil: the test's log (testLogger)
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	log := o.log
	if log == nil {
		log = testLogger(t)
	}
	st, m := testenv.Store(t, log, testDomain)
	acct := testenv.Users(t, m, testUser)[0]
	e := &env{t: t, st: st, acct: acct, del: deliver.New(st, deliver.Config{MaxMessageBytes: 64 << 20}, log)}
	cfg := o.cfg
	cfg.Hostname = "imap.example.test"
	cfg.AllowPlaintextAuth = o.plain || cfg.AllowPlaintextAuth
	if o.tls {
		cfg.TLS, e.cert = testenv.SelfSigned(t, "imap.example.test")
	}
	a := auth.New(st, auth.Config{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}, log)
	var err error
	e.srv, err = New(cfg, Deps{Store: st, Deliver: e.del, Auth: a, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e.addr = testenv.Serve(t, e.srv.Serve, ErrServerClosed)
	if o.tls {
		e.tlsAddr = testenv.Serve(t, e.srv.ServeTLS, ErrServerClosed)
	}
	testenv.Shutdown(t, e.srv.Shutdown)
	return e
}

// put delivers body into a mailbox of the account and returns its UID.
func (e *env) put(mailbox, body string, flags ...string) uint32 {
	e.t.Helper()
	d, err := e.del.Append(context.Background(), e.acct.ID, mailbox, flags, time.Time{}, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	return d.UID
}

func (e *env) mailbox(name string) store.Mailbox {
	e.t.Helper()
	mb, err := e.st.GetMailbox(context.Background(), e.acct.ID, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return mb
}

func (e *env) metas(name string) []store.MessageMeta {
	e.t.Helper()
	ms, err := e.st.ListMessages(context.Background(), e.mailbox(name).ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return ms
}

// client is a raw-socket IMAP client for transcripts.
type client struct{ *testenv.LineConn }

func (e *env) dial() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	cl := newClient(e.t, c)
	cl.Expect("* OK ")
	return cl
}

func newClient(t testing.TB, c net.Conn) *client {
	return &client{testenv.NewLineConn(t, c, 30*time.Second)}
}

// login dials and logs in (the env must allow plaintext auth).
func (e *env) login() *client {
	e.t.Helper()
	c := e.dial()
	c.cmd("a0 LOGIN " + testUser + ` "` + testPass + `"`)
	return c
}

// cmd sends a tagged command and returns the untagged lines (literals
// inlined) up to the tagged reply, which must be OK.
func (c *client) cmd(line string) []string {
	c.T.Helper()
	untagged, status := c.run(line)
	if !strings.HasPrefix(status, "OK") {
		c.T.Fatalf("%s: got %q", line, status)
	}
	return untagged
}

// run sends a command and returns the untagged lines and the tagged
// status text ("OK ...", "NO ...", "BAD ...").
func (c *client) run(line string) (untagged []string, status string) {
	c.T.Helper()
	tag, _, _ := strings.Cut(line, " ")
	c.Send(line)
	return c.until(tag)
}

func (c *client) until(tag string) (untagged []string, status string) {
	c.T.Helper()
	for {
		l := c.readResponse()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// readResponse reads a line and any literals it announces.
func (c *client) readResponse() string {
	c.T.Helper()
	l := c.ReadLine()
	for strings.HasSuffix(l, "}") {
		i := strings.LastIndexByte(l, '{')
		if i < 0 {
			break
		}
		var n int
		if _, err := fmt.Sscanf(l[i:], "{%d}", &n); err != nil {
			break
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.R, buf); err != nil {
			c.T.Fatal(err)
		}
		l += "\r\n" + string(buf) + c.ReadLine()
	}
	return l
}

func (e *env) clientTLS() *tls.Config {
	return testenv.ClientTLS(e.cert, "imap.example.test")
}

// testLogger logs through t, failing the test on a logged panic.
func testLogger(t testing.TB) *slog.Logger { return testenv.Logger(t) }
