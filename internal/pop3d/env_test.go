package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strings"
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
	e.addr = e.listen(false)
	if tlsOn {
		e.tls = e.listen(true)
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
	cl.expect("+OK ")
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
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// login dials and logs in with USER/PASS.
func (e *env) login() *client {
	e.t.Helper()
	c := e.dial()
	c.cmd("USER "+testUser, "+OK")
	c.cmd("PASS "+testPass, "+OK")
	return c
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// readLine reads one reply line without its CRLF.
func (c *client) readLine() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("reply line %q does not end with CRLF", l)
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

// cmd sends a command and checks the first line of the reply.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line)
	return c.expect(prefix)
}

// multi reads the lines of a multi-line reply up to ".", undoing
// dot-stuffing.
func (c *client) multi() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.readLine()
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

// body reads a multi-line reply as raw bytes, undoing dot-stuffing, with
// the line endings as sent.
func (c *client) body() []byte {
	c.t.Helper()
	var b bytes.Buffer
	for {
		l, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("read body: %v", err)
		}
		if string(l) == ".\r\n" {
			return b.Bytes()
		}
		b.Write(bytes.TrimPrefix(l, []byte(".")))
	}
}

// closed checks that the server closed the connection.
func (c *client) closed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("connection still open, got %q", l)
	}
}

func selfSigned(t testing.TB) (*tls.Config, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pop.example.test"},
		DNSNames:     []string{"pop.example.test", "localhost"},
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

// clientTLS trusts the test certificate.
func (e *env) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.cert)
	return &tls.Config{RootCAs: pool, ServerName: "pop.example.test"}
}

// testLogger logs through t at debug level, and fails the test on a
// logged session panic.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(&tbHandler{t: t})
}

type tbHandler struct {
	t     testing.TB
	attrs []slog.Attr
}

func (h *tbHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelDebug }

func (h *tbHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	if strings.Contains(r.Message, "panic") {
		h.t.Error(b.String())
	} else {
		h.t.Log(b.String())
	}
	return nil
}

func (h *tbHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &tbHandler{t: h.t, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h *tbHandler) WithGroup(string) slog.Handler { return h }
