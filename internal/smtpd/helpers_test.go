package smtpd

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/testenv"
)

const testPassword = testenv.Password

// testCert is one self-signed certificate for localhost, 127.0.0.1 and
// mx.example.org, made once per test binary.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	return testenv.NewCACert("localhost", "mx.example.org")
})

type envOpts struct {
	mode    Mode
	cfg     func(*Config)
	authCfg auth.Config
	relay   bool
	users   []string // default alice@example.org, bob@example.org
	quiet   bool     // discard logs (fuzzing, benchmarks)
	checker Checker  // Deps.Checker
}

type testEnv struct {
	t         testing.TB
	srv       *Server
	addr      string // plain listener (25 or 587)
	tlsAddr   string // implicit TLS listener (465)
	st        store.Store
	mgr       *accounts.Manager
	clientTLS *tls.Config
	certFile  string
}

func newEnv(t testing.TB, o envOpts) *testEnv {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testenv.Writer(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.quiet {
		log = slog.New(slog.DiscardHandler)
	} else if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testenv.Writer(t), &slog.HandlerOptions{Level: LevelTrace}))
	}
	st, mgr := testenv.Store(t, nil, "example.org", "example.net")
	users := o.users
	if users == nil {
		users = []string{"alice@example.org", "bob@example.org"}
	}
	testenv.Users(t, mgr, users...)
	dl := deliver.New(st, deliver.Config{MaxMessageBytes: 64 << 20, Relay: o.relay}, log)
	ac := o.authCfg
	if ac.BaseDelay == 0 {
		ac.BaseDelay, ac.MaxDelay = time.Millisecond, 2*time.Millisecond
	}
	au := auth.New(st, ac, log)
	cfg := Config{
		Mode:     o.mode,
		Hostname: "mx.example.org",
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	srv, err := New(cfg, Deps{Store: st, Deliver: dl, Auth: au, Log: log, Checker: o.checker})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	if cfg.TLS != nil {
		go srv.ServeTLS(tln)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		tln.Close()
	})
	return &testEnv{
		t: t, srv: srv, addr: ln.Addr().String(), tlsAddr: tln.Addr().String(),
		st: st, mgr: mgr, certFile: testenv.CertFile(t, cert.Leaf),
		clientTLS: testenv.ClientTLS(cert.Leaf, "localhost"),
	}
}

// inbox returns the bodies in address's INBOX, oldest first.
func (e *testEnv) inbox(address string) []string {
	e.t.Helper()
	return e.mailbox(address, "INBOX")
}

// mailbox returns the bodies in one of address's mailboxes, oldest first.
func (e *testEnv) mailbox(address, name string) []string {
	e.t.Helper()
	ctx := context.Background()
	a, err := e.st.GetAccount(ctx, address)
	if err != nil {
		e.t.Fatal(err)
	}
	mb, err := e.st.GetMailbox(ctx, a.ID, name)
	if err != nil {
		e.t.Fatal(err)
	}
	metas, err := e.st.ListMessages(ctx, mb.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	uids := make([]uint32, len(metas))
	for i, m := range metas {
		uids[i] = m.UID
	}
	msgs, err := e.st.GetMessages(ctx, mb.ID, uids)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		br, err := e.st.OpenBlob(ctx, m.BlobID)
		if err != nil {
			e.t.Fatal(err)
		}
		b := make([]byte, br.Size())
		if _, err := br.ReadAt(b, 0); err != nil {
			e.t.Fatal(err)
		}
		br.Close()
		out = append(out, string(b))
	}
	return out
}

// client is a raw SMTP client for tests.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// dialRaw connects without reading the banner.
func (e *testEnv) dialRaw() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: e.t, conn: c, r: bufio.NewReader(c)}
}

// dial connects and reads the banner.
func (e *testEnv) dial() *client {
	c := e.dialRaw()
	c.expect(220)
	return c
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one (possibly multi-line) reply.
func (c *client) reply() (int, string) {
	c.t.Helper()
	var text []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (got %q)", err, text)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			c.t.Fatalf("short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			c.t.Fatalf("bad reply line %q", line)
		}
		text = append(text, line[4:])
		if line[3] == ' ' {
			return code, strings.Join(text, "\n")
		}
	}
}

func (c *client) expect(code int) string {
	c.t.Helper()
	got, text := c.reply()
	if got != code {
		c.t.Fatalf("got %d %s, want %d", got, text, code)
	}
	return text
}

// cmd sends a command and checks the reply code.
func (c *client) cmd(line string, code int) string {
	c.t.Helper()
	c.write(line + "\r\n")
	got, text := c.reply()
	if got != code {
		c.t.Fatalf("%q: got %d %s, want %d", line, got, text, code)
	}
	return text
}

// closed reports whether the server closes the connection within 5s
// (anything it still writes first, such as a 421, is skipped).
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.r)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// startTLS upgrades c after EHLO.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.cmd("STARTTLS", 220)
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

// login authenticates with AUTH PLAIN.
func (c *client) login(user, pass string, code int) {
	c.t.Helper()
	c.cmd("AUTH PLAIN "+plain(user, pass), code)
}

func plain(user, pass string) string {
	return b64("\x00" + user + "\x00" + pass)
}

// send runs one whole transaction with DATA and checks the final reply.
func (c *client) send(from string, to []string, msg string, code int) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250)
	for _, r := range to {
		c.cmd("RCPT TO:<"+r+">", 250)
	}
	c.cmd("DATA", 354)
	c.write(msg)
	c.write(".\r\n")
	got, text := c.reply()
	if got != code {
		c.t.Fatalf("end of data: got %d %s, want %d", got, text, code)
	}
	return text
}

func message(from, to, subject, body string) string {
	return fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\nDate: Thu, 26 Nov 2026 01:00:00 +0000\r\n\r\n%s",
		from, to, subject, rand.Text(), body)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// tlsClient runs the TLS handshake on c after a 220 to STARTTLS. Nothing
// c buffered survives, as RFC 3207 §4.2 wants of both sides.
func tlsClient(t testing.TB, c *client, e *testEnv) *client {
	t.Helper()
	tc := tls.Client(c.conn, e.clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, conn: tc, r: bufio.NewReader(tc)}
}
