package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/mx"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

// peer is a fake MTA: a go-smtp server whose answers tests choose.
type peer struct {
	srv  *smtp.Server
	addr string

	mu    sync.Mutex
	rcpt  func(to string) error // nil accepts
	data  func() error          // nil accepts
	got   []received
	helos []string
	tls   []bool
}

type received struct {
	from     string
	rcpts    []string
	body     string
	utf8     bool
	bodyType smtp.BodyType // MAIL's BODY parameter
}

func startPeer(t *testing.T, utf8 bool) *peer {
	t.Helper()
	p := &peer{}
	p.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		p.mu.Lock()
		p.helos = append(p.helos, c.Hostname())
		p.tls = append(p.tls, isTLS)
		p.mu.Unlock()
		return &peerSession{p: p}, nil
	}))
	p.srv.Domain = "peer.test"
	p.srv.TLSConfig = selfSigned(t)
	p.srv.EnableSMTPUTF8 = utf8
	p.srv.EnableDSN = true
	p.srv.MaxMessageBytes = 1 << 20
	p.srv.ReadTimeout, p.srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *peer) set(rcpt func(string) error, data func() error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rcpt, p.data = rcpt, data
}

func (p *peer) messages() []received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]received(nil), p.got...)
}

type peerSession struct {
	p   *peer
	cur received
}

func (s *peerSession) Reset()        { s.cur = received{} }
func (s *peerSession) Logout() error { return nil }
func (s *peerSession) Mail(from string, opts *smtp.MailOptions) error {
	s.cur = received{from: from, utf8: opts != nil && opts.UTF8}
	if opts != nil {
		s.cur.bodyType = opts.Body
	}
	return nil
}
func (s *peerSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.p.mu.Lock()
	f := s.p.rcpt
	s.p.mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}
func (s *peerSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.p.data != nil {
		if err := s.p.data(); err != nil {
			return err
		}
	}
	s.cur.body = string(b)
	s.p.got = append(s.p.got, s.cur)
	return nil
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peer.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"peer.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func smtpErr(code int, enh smtp.EnhancedCode, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// fakeDNS maps domains to hosts whose "addresses" are indexes into
// dialTo: the test dialer sends 10.0.0.N:25 to dialTo[N].
type fakeDNS map[string][]mx.Host

func (f fakeDNS) Lookup(_ context.Context, domain string) ([]mx.Host, error) {
	if h, ok := f[domain]; ok {
		return h, nil
	}
	return nil, &mx.Error{Domain: domain, Reason: "NXDOMAIN", Permanent: true}
}

func host(name string, n byte) mx.Host {
	return mx.Host{Name: name, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, n})}}
}

// bounces records the DSNs the relay sends.
type bounces struct {
	mu  sync.Mutex
	got []*deliver.Message
	bod []string
}

func (b *bounces) Resolve(_ context.Context, addr string) (deliver.Recipient, error) {
	return deliver.Recipient{Address: addr, Accounts: []int64{1}}, nil
}
func (b *bounces) Remote(addr string) (deliver.Recipient, error) {
	return deliver.Recipient{Address: addr, Remote: []string{addr}}, nil
}
func (b *bounces) Deliver(_ context.Context, m *deliver.Message) error {
	body, _ := io.ReadAll(m.Body)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, m)
	b.bod = append(b.bod, string(body))
	return nil
}
func (b *bounces) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bod...)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness runs a relay over a real store. Its clock runs a minute ahead
// of the store's, so what the test queues is due at once.
type harness struct {
	st      *sqlite.Store
	r       *Relay
	bounces *bounces
	clock   *clock
	dialTo  map[byte]string
	dials   atomic.Int32
}

func newHarness(t *testing.T, dns fakeDNS, dialTo map[byte]string, cfg Config, mods ...func(*Deps)) *harness {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{st: st, bounces: &bounces{}, clock: &clock{t: time.Now().Add(time.Minute)}, dialTo: dialTo}
	cfg.Hostname = "relay.test"
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay = time.Hour // retries happen when the test moves the clock
	}
	cfg.Poll = 10 * time.Millisecond
	cfg.CommandTimeout, cfg.DataTimeout, cfg.ConnectTimeout = 2*time.Second, 2*time.Second, time.Second
	var d net.Dialer
	deps := Deps{Store: st, Deliver: h.bounces, Resolver: dns, Now: h.clock.Now,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			h.dials.Add(1)
			ap := netip.MustParseAddrPort(addr)
			if ap.Port() != 25 {
				t.Errorf("dialled port %d, want 25", ap.Port())
			}
			to, ok := h.dialTo[ap.Addr().As4()[3]]
			if !ok {
				return nil, errors.New("connection refused")
			}
			return d.DialContext(ctx, network, to)
		}}
	for _, m := range mods {
		m(&deps)
	}
	h.r, err = New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	h.r.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.r.Shutdown(ctx)
	})
	return h
}

// queue puts a message from "from" to rcpts in the store's queue.
func (h *harness) queue(t *testing.T, from string, body string, rcpts ...string) {
	t.Helper()
	b, err := h.st.Spool(context.Background(), strings.NewReader(body), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d := &store.Delivery{Blob: b, From: from}
	for _, r := range rcpts {
		d.Remote = append(d.Remote, store.QueueRecipient{Address: r})
	}
	if _, err := h.st.Deliver(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	h.r.Kick()
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (h *harness) queueLen(t *testing.T) int {
	q, err := h.st.ListQueue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(q)
}

// journey is every event of queue entry 1 as "kind detail" lines.
func (h *harness) journey(t *testing.T, id int64) string {
	evs, err := h.st.QueueEvents(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Kind + " " + e.Detail + "\n")
	}
	return b.String()
}

const msg = "From: a@here.test\r\nTo: x@there.test\r\nSubject: hi\r\n\r\nline one\r\n.leading dot\r\n"

func TestDeliverOneTransaction(t *testing.T) {
	p := startPeer(t, false)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{})
	h.queue(t, "a@here.test", msg, "x@there.test", "y@there.test")
	waitFor(t, "delivery", func() bool { return h.queueLen(t) == 0 })
	got := p.messages()
	if len(got) != 1 || len(got[0].rcpts) != 2 || got[0].from != "a@here.test" {
		t.Fatalf("peer got %+v", got)
	}
	if got[0].body != msg {
		t.Errorf("body %q, want %q", got[0].body, msg)
	}
	if p.helos[0] != "relay.test" || !p.tls[len(p.tls)-1] {
		t.Errorf("EHLO %v, TLS %v", p.helos, p.tls)
	}
	j := h.journey(t, 1)
	for _, want := range []string{"queued", "attempt to mx.there.test [10.0.0.1]", "session mx.there.test: TLS 1.3", "delivered x@there.test", "delivered y@there.test"} {
		if !strings.Contains(j, want) {
			t.Errorf("journey lacks %q:\n%s", want, j)
		}
	}
}

func TestNextMXOnConnectionFailure(t *testing.T) {
	p := startPeer(t, false)
	dns := fakeDNS{"there.test": {host("mx1.there.test", 1), host("mx2.there.test", 2)}}
	h := newHarness(t, dns, map[byte]string{2: p.addr}, Config{})
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "delivery", func() bool { return h.queueLen(t) == 0 })
	if j := h.journey(t, 1); !strings.Contains(j, "mx1.there.test: connection refused") || !strings.Contains(j, "delivered x@there.test: mx2.there.test") {
		t.Errorf("journey:\n%s", j)
	}
}

func TestDeferThenDeliver(t *testing.T) {
	p := startPeer(t, false)
	p.set(func(string) error { return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "try later") }, nil)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{BaseDelay: time.Hour})
	h.queue(t, "a@here.test", msg, "x@there.test")
	var e store.QueueEntry
	waitFor(t, "deferral", func() bool {
		e, _, _ = h.st.GetQueueEntry(context.Background(), 1)
		return e.Attempts == 1
	})
	if d := e.NextAttempt.Sub(h.clock.Now()); d < time.Hour || d > 72*time.Minute {
		t.Errorf("next attempt in %s, want 1h plus up to 20%%", d)
	}
	if !strings.Contains(e.LastError, "451 4.3.0 try later") {
		t.Errorf("last error %q", e.LastError)
	}
	// Not retried before it is due.
	time.Sleep(50 * time.Millisecond)
	if e2, _, _ := h.st.GetQueueEntry(context.Background(), 1); e2.Attempts != 1 {
		t.Fatalf("retried early: %d attempts", e2.Attempts)
	}
	p.set(nil, nil)
	h.clock.Add(2 * time.Hour)
	waitFor(t, "delivery", func() bool { return h.queueLen(t) == 0 })
	if len(p.messages()) != 1 || len(h.bounces.list()) != 0 {
		t.Errorf("peer got %d, bounces %d", len(p.messages()), len(h.bounces.list()))
	}
	if st := h.r.Stats(); st.Attempts != 2 || st.Deferred != 1 || st.Delivered != 1 || st.Bounced != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestBounceOnPermanentFailure(t *testing.T) {
	p := startPeer(t, false)
	p.set(func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	}, nil)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{})
	h.queue(t, "a@here.test", msg, "nobody@there.test", "x@there.test")
	waitFor(t, "bounce", func() bool { return h.queueLen(t) == 0 && len(h.bounces.list()) == 1 })
	b := h.bounces.got[0]
	if b.From != "" || b.Recipients[0].Address != "a@here.test" {
		t.Errorf("bounce from %q to %+v", b.From, b.Recipients)
	}
	d := h.bounces.list()[0]
	for _, want := range []string{"Final-Recipient: rfc822; nobody@there.test", "Status: 5.1.1", "Remote-MTA: dns; mx.there.test",
		"Diagnostic-Code: smtp; 550 5.1.1 no such user", "Subject: hi"} {
		if !strings.Contains(d, want) {
			t.Errorf("DSN lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "x@there.test\r\nAction") || len(p.messages()) != 1 {
		t.Errorf("delivered recipient reported or not delivered")
	}
}

func TestNoBounceForNullSender(t *testing.T) {
	p := startPeer(t, false)
	p.set(nil, func() error { return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "content refused") })
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{})
	h.queue(t, "", msg, "x@there.test")
	waitFor(t, "failure", func() bool { return h.queueLen(t) == 0 })
	if len(h.bounces.list()) != 0 {
		t.Error("bounced a bounce")
	}
	if j := h.journey(t, 1); !strings.Contains(j, "bounced x@there.test: 554 5.6.0 content refused") || !strings.Contains(j, "null sender") {
		t.Errorf("journey:\n%s", j)
	}
}

func TestExpiryBounces(t *testing.T) {
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{}, Config{Lifetime: 3 * time.Hour})
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "deferral", func() bool {
		e, _, _ := h.st.GetQueueEntry(context.Background(), 1)
		return e.Attempts == 1
	})
	h.clock.Add(4 * time.Hour)
	waitFor(t, "expiry", func() bool { return h.queueLen(t) == 0 && len(h.bounces.list()) == 1 })
	if d := h.bounces.list()[0]; !strings.Contains(d, "Status: 4.4.7") || !strings.Contains(d, "gave up after 3h0m0s") {
		t.Errorf("DSN:\n%s", d)
	}
}

func TestPermanentLookupFailureBounces(t *testing.T) {
	h := newHarness(t, fakeDNS{}, nil, Config{})
	h.queue(t, "a@here.test", msg, "x@nowhere.test")
	waitFor(t, "bounce", func() bool { return h.queueLen(t) == 0 && len(h.bounces.list()) == 1 })
	if d := h.bounces.list()[0]; !strings.Contains(d, "Status: 5.4.4") || !strings.Contains(d, "NXDOMAIN") {
		t.Errorf("DSN:\n%s", d)
	}
}

func TestSMTPUTF8Required(t *testing.T) {
	p := startPeer(t, false)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{})
	h.queue(t, "a@here.test", "Subject: caf\xc3\xa9\r\n\r\nx\r\n", "x@there.test")
	waitFor(t, "bounce", func() bool { return h.queueLen(t) == 0 && len(h.bounces.list()) == 1 })
	if d := h.bounces.list()[0]; !strings.Contains(d, "Status: 5.6.7") {
		t.Errorf("DSN:\n%s", d)
	}
	// A peer with SMTPUTF8 gets it, flagged.
	p2 := startPeer(t, true)
	h2 := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p2.addr}, Config{})
	h2.queue(t, "a@here.test", "Subject: caf\xc3\xa9\r\n\r\nx\r\n", "x@there.test")
	waitFor(t, "delivery", func() bool { return h2.queueLen(t) == 0 })
	if got := p2.messages(); len(got) != 1 || !got[0].utf8 {
		t.Errorf("peer got %+v", got)
	}
}

// A dead domain (its MX accepts connections and never speaks) must not
// hold up another domain, and gets at most PerDomain connections.
func TestDeadDomainDoesNotBlockOthers(t *testing.T) {
	p := startPeer(t, false)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		silent.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	dns := fakeDNS{"dead.test": {host("mx.dead.test", 9)}, "there.test": {host("mx.there.test", 1)}}
	h := newHarness(t, dns, map[byte]string{1: p.addr, 9: silent.Addr().String()}, Config{MaxConcurrent: 6, PerDomain: 2})
	for range 6 {
		h.queue(t, "a@here.test", msg, "x@dead.test")
	}
	waitFor(t, "connections to the dead domain", func() bool { mu.Lock(); defer mu.Unlock(); return len(conns) >= 2 })
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "delivery to the live domain", func() bool { return len(p.messages()) == 1 })
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n > 2 {
		t.Errorf("%d connections to the dead domain, limit 2", n)
	}
}

func TestReplyTooLong(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("220-"))
		junk := []byte(strings.Repeat("x", 64<<10))
		for range 64 { // 4 MiB without a line end
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = newClient(context.Background(), conn, "peer", "me", timeouts{command: 5 * time.Second, data: 5 * time.Second})
	if !errors.Is(err, errReplyTooLong) {
		t.Fatalf("got %v, want errReplyTooLong", err)
	}
}

func TestNextDelay(t *testing.T) {
	want := []time.Duration{1, 5, 15, 30, 60, 120, 240, 240, 240}
	for i, w := range want {
		d := nextDelay(time.Minute, i+1)
		if d < w*time.Minute || d > w*time.Minute*12/10 {
			t.Errorf("attempt %d: %s, want %dm plus up to 20%%", i+1, d, w)
		}
	}
}

func TestConnectionReuse(t *testing.T) {
	p := startPeer(t, false)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{})
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "first delivery", func() bool { return h.queueLen(t) == 0 })
	h.queue(t, "b@here.test", msg, "y@there.test")
	waitFor(t, "second delivery", func() bool { return len(p.messages()) == 2 })
	if n := h.dials.Load(); n != 1 {
		t.Errorf("%d connections for two messages, want 1", n)
	}
	waitFor(t, "queue empty", func() bool { return h.queueLen(t) == 0 })
	// Queue IDs are never reused: the second entry is 2.
	if j := h.journey(t, 2); !strings.Contains(j, "TLS 1.3, reused") {
		t.Errorf("journey:\n%s", j)
	}
	// A connection the peer closed meanwhile is replaced, not a failure.
	p.srv.Close()
	p2 := startPeer(t, false)
	h.dialTo[1] = p2.addr // the test's dialer map; no attempt is running
	h.queue(t, "c@here.test", msg, "z@there.test")
	waitFor(t, "third delivery", func() bool { return len(p2.messages()) == 1 })
}

func TestDelayWarningOnce(t *testing.T) {
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{}, Config{DelayWarning: 4 * time.Hour})
	h.queue(t, "a@here.test", msg, "x@there.test")
	attempts := func(n int) func() bool {
		return func() bool {
			e, _, _ := h.st.GetQueueEntry(context.Background(), 1)
			return e.Attempts == n
		}
	}
	waitFor(t, "first deferral", attempts(1))
	if len(h.bounces.list()) != 0 {
		t.Fatal("warned too early")
	}
	h.clock.Add(5 * time.Hour)
	waitFor(t, "second deferral", attempts(2))
	h.clock.Add(7 * time.Hour) // the second retry comes 5h (+20%) later
	waitFor(t, "third deferral", attempts(3))
	got := h.bounces.list()
	if len(got) != 1 {
		t.Fatalf("%d warnings, want 1", len(got))
	}
	for _, want := range []string{"Action: delayed", "Subject: Delayed Mail", "Status: 4.4.1", "connection refused"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("warning lacks %q:\n%s", want, got[0])
		}
	}
}
