package imapd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

const (
	testDomain = "example.test"
	testUser   = "alice@example.test"
	testPass   = "correct horse battery staple"
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
	plain bool // AllowPlaintextAuth
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	log := testLogger(t)
	st, err := sqlite.Open(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := accounts.NewManager(st)
	if err := m.AddDomain(ctx, testDomain); err != nil {
		t.Fatal(err)
	}
	acct, err := m.AddUser(ctx, testUser, testPass)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, acct: acct, del: deliver.New(st, deliver.Config{MaxMessageBytes: 64 << 20}, log)}
	cfg := o.cfg
	cfg.Hostname = "imap.example.test"
	cfg.AllowPlaintextAuth = o.plain || cfg.AllowPlaintextAuth
	if o.tls {
		cfg.TLS, e.cert = selfSigned(t)
	}
	a := auth.New(st, auth.Config{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}, log)
	e.srv, err = New(cfg, Deps{Store: st, Deliver: e.del, Auth: a, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e.addr = e.listen(false)
	if o.tls {
		e.tlsAddr = e.listen(true)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e
}

func (e *env) listen(implicitTLS bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go func() {
		var err error
		if implicitTLS {
			err = e.srv.ServeTLS(ln)
		} else {
			err = e.srv.Serve(ln)
		}
		if !errors.Is(err, ErrServerClosed) {
			e.t.Errorf("Serve: %v", err)
		}
	}()
	return ln.Addr().String()
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
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func (e *env) dial() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	cl := newClient(e.t, c)
	cl.expect("* OK ")
	return cl
}

func newClient(t testing.TB, c net.Conn) *client {
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// login dials and logs in (the env must allow plaintext auth).
func (e *env) login() *client {
	e.t.Helper()
	c := e.dial()
	c.cmd("a0 LOGIN " + testUser + ` "` + testPass + `"`)
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) readLine() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end with CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads a line and checks its prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.readLine()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

// cmd sends a tagged command and returns the untagged lines (literals
// inlined) up to the tagged reply, which must be OK.
func (c *client) cmd(line string) []string {
	c.t.Helper()
	untagged, status := c.run(line)
	if !strings.HasPrefix(status, "OK") {
		c.t.Fatalf("%s: got %q", line, status)
	}
	return untagged
}

// run sends a command and returns the untagged lines and the tagged
// status text ("OK ...", "NO ...", "BAD ...").
func (c *client) run(line string) (untagged []string, status string) {
	c.t.Helper()
	tag, _, _ := strings.Cut(line, " ")
	c.send(line)
	return c.until(tag)
}

func (c *client) until(tag string) (untagged []string, status string) {
	c.t.Helper()
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
	c.t.Helper()
	l := c.readLine()
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
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatal(err)
		}
		l += "\r\n" + string(buf) + c.readLine()
	}
	return l
}

func selfSigned(t testing.TB) (*tls.Config, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imap.example.test"},
		DNSNames:     []string{"imap.example.test", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}, cert
}

func (e *env) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.cert)
	return &tls.Config{RootCAs: pool, ServerName: "imap.example.test"}
}

// testLogger logs through t, failing the test on a logged panic.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(&tbHandler{t: t, mu: &sync.Mutex{}})
}

type tbHandler struct {
	t     testing.TB
	mu    *sync.Mutex
	attrs []slog.Attr
}

func (h *tbHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *tbHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	if strings.Contains(r.Message, "panic") {
		h.t.Error(b.String())
	} else if testing.Verbose() {
		h.t.Log(b.String())
	}
	return nil
}

func (h *tbHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &tbHandler{t: h.t, mu: h.mu, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *tbHandler) WithGroup(string) slog.Handler { return h }
