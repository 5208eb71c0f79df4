package test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/dnstest"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
	"github.com/ternmail/tern/internal/testenv"
)

// The relay story: two (or three) Terns, each the MX of its domain on
// 127.0.0.x:25, find each other through a DNS server on loopback.

// relayDNS serves the MX records of a.test, b.test, c.test and p.test.
func relayDNS(t testing.TB) *dnstest.Server {
	return dnstest.Start(t, map[string][]string{
		"a.test": {"MX 10 mx.a.test."}, "mx.a.test": {"A 127.0.0.2"},
		"b.test": {"MX 10 mx.b.test."}, "mx.b.test": {"A 127.0.0.3"},
		"c.test": {"MX 10 mx.c.test."}, "mx.c.test": {"A 127.0.0.4"},
		"p.test": {"MX 10 mx.p.test."}, "mx.p.test": {"A 127.0.0.5"}, // Postfix
	})
}

// needPort25 skips the test when this process cannot bind port 25 on
// 127.0.0.2 (not root), unless under CI.
func needPort25(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:25")
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("binding 127.0.0.2:25 is required under CI=true: %v", err)
		}
		t.Skipf("cannot bind 127.0.0.2:25: %v", err)
	}
	ln.Close()
}

// mxNode is one Tern serving domain, its MX on ip:25.
type mxNode struct {
	*daemon.Daemon
	cfg config.Config
}

func startMXNode(t testing.TB, dns *dnstest.Server, domain, ip, dataDir string, users map[string]string) *mxNode {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "mx." + domain
	cfg.DataDir = dataDir
	cfg.Listen = config.Listen{SMTP: ip + ":25", Submission: ip + ":0"}
	cfg.DNS.Nameserver = dns.Addr()
	cfg.Relay.Enabled = true
	cfg.Relay.RetryDelay = config.Duration{Duration: 200 * time.Millisecond}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", domain)
	}
	d, err := daemon.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	n := &mxNode{Daemon: d, cfg: cfg}
	t.Cleanup(func() { n.stop(t) })
	m := accounts.NewManager(d.Store())
	ctx := context.Background()
	if _, err := d.Store().GetDomain(ctx, domain); errors.Is(err, store.ErrNotFound) {
		if err := m.AddDomain(ctx, domain); err != nil {
			t.Fatal(err)
		}
		for u, pw := range users {
			if _, err := m.AddUser(ctx, u, pw); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

func (n *mxNode) stop(t testing.TB) {
	if n.Daemon == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Errorf("shutdown %s: %v", n.cfg.Hostname, err)
	}
	n.Daemon = nil
}

// submit sends a message on the submission port with STARTTLS and AUTH.
func (n *mxNode) submit(t *testing.T, user, pw string, to []string, body string) {
	t.Helper()
	submitTo(t, n.Addr("submission").String(), user, pw, to, body)
}

func submitTo(t *testing.T, addr, user, pw string, to []string, body string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pw)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail(user, to, strings.NewReader(body)); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Quit()
}

// waitInbox waits until the account's INBOX holds want messages and
// returns their bodies.
func (n *mxNode) waitInbox(t testing.TB, address string, want int, within time.Duration) []string {
	t.Helper()
	ctx := context.Background()
	st := n.Store()
	a, err := st.GetAccount(ctx, address)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.GetMailbox(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		metas, err := st.ListMessages(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(metas) >= want {
			uids := make([]uint32, len(metas))
			for i, m := range metas {
				uids[i] = m.UID
			}
			msgs, err := st.GetMessages(ctx, mb.ID, uids)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, m := range msgs {
				r, err := st.OpenBlob(ctx, m.BlobID)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
				r.Close()
				out = append(out, string(b))
			}
			return out
		}
		if time.Now().After(deadline) {
			n.dumpQueue(t)
			t.Fatalf("%s: %d messages in INBOX after %s, want %d", address, len(metas), within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dumpQueue logs every queue entry with its journey.
func (n *mxNode) dumpQueue(t testing.TB) {
	ctx := context.Background()
	q, _ := n.Store().ListQueue(ctx)
	for _, e := range q {
		_, evs, _ := n.Store().GetQueueEntry(ctx, e.ID)
		t.Logf("%s queue %d to %s attempts %d last error %q", n.cfg.Hostname, e.ID, e.Domain, e.Attempts, e.LastError)
		for _, ev := range evs {
			t.Logf("  %s %s", ev.Kind, ev.Detail)
		}
	}
}

func message(from, to, subject, text string) string {
	return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d@test>\r\nDate: %s\r\n\r\n%s\r\n",
		from, to, subject, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z), text)
}

// TestRelayStory: alice@a.test writes to bob@b.test across MX, bob
// answers, the answer arrives.
func TestRelayStory(t *testing.T) {
	needPort25(t)
	dns := relayDNS(t)
	a := startMXNode(t, dns, "a.test", "127.0.0.2", t.TempDir(), map[string]string{"alice@a.test": "alice-pw"})
	b := startMXNode(t, dns, "b.test", "127.0.0.3", t.TempDir(), map[string]string{"bob@b.test": "bob-pw"})

	a.submit(t, "alice@a.test", "alice-pw", []string{"bob@b.test"}, message("alice@a.test", "bob@b.test", "hello", "Hi Bob"))
	got := b.waitInbox(t, "bob@b.test", 1, 10*time.Second)
	if !strings.Contains(got[0], "Subject: hello") || !strings.Contains(got[0], "Hi Bob") {
		t.Fatalf("bob got:\n%s", got[0])
	}
	// b's Received field says a came over STARTTLS.
	if !strings.Contains(got[0], "Received: from mx.a.test (") || !strings.Contains(got[0], "by mx.b.test (Tern) with ESMTPS") {
		t.Errorf("no trace of a TLS hop from mx.a.test in:\n%s", got[0])
	}
	b.submit(t, "bob@b.test", "bob-pw", []string{"alice@a.test"}, message("bob@b.test", "alice@a.test", "Re: hello", "Hi Alice"))
	got = a.waitInbox(t, "alice@a.test", 1, 10*time.Second)
	if !strings.Contains(got[0], "Subject: Re: hello") {
		t.Fatalf("alice got:\n%s", got[0])
	}
	// Delivered entries leave the queue; their journey stays.
	waitQueueEmpty(t, a)
	waitQueueEmpty(t, b)
}

func waitQueueEmpty(t *testing.T, n *mxNode) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		q, err := n.Store().ListQueue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(q) == 0 {
			return
		}
		if time.Now().After(deadline) {
			n.dumpQueue(t)
			t.Fatalf("%s: queue not empty", n.cfg.Hostname)
		}
	}
}

// TestRelayPeerDown: c.test's MX is down; the message is deferred, then
// delivered once it comes up.
func TestRelayPeerDown(t *testing.T) {
	needPort25(t)
	dns := relayDNS(t)
	a := startMXNode(t, dns, "a.test", "127.0.0.2", t.TempDir(), map[string]string{"alice@a.test": "alice-pw"})
	a.submit(t, "alice@a.test", "alice-pw", []string{"carol@c.test"}, message("alice@a.test", "carol@c.test", "later", "Hi Carol"))
	ctx := context.Background()
	// Wait for a deferral.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		q, err := a.Store().ListQueue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) == 1 && q[0].Attempts >= 1 {
			if q[0].LastError == "" {
				t.Errorf("deferred without an error")
			}
			break
		}
		if time.Now().After(deadline) {
			a.dumpQueue(t)
			t.Fatal("no deferral")
		}
	}
	c := startMXNode(t, dns, "c.test", "127.0.0.4", t.TempDir(), map[string]string{"carol@c.test": "carol-pw"})
	got := c.waitInbox(t, "carol@c.test", 1, 15*time.Second)
	if !strings.Contains(got[0], "Hi Carol") {
		t.Fatalf("carol got:\n%s", got[0])
	}
	waitQueueEmpty(t, a)
	// Exactly once.
	time.Sleep(300 * time.Millisecond)
	if got := c.waitInbox(t, "carol@c.test", 1, time.Second); len(got) != 1 {
		t.Errorf("carol got %d copies", len(got))
	}
}

// TestRelayBounce: b.test refuses an unknown user with 550; alice gets a
// DSN in her INBOX, and a known recipient of the same message still gets
// it.
func TestRelayBounce(t *testing.T) {
	needPort25(t)
	dns := relayDNS(t)
	a := startMXNode(t, dns, "a.test", "127.0.0.2", t.TempDir(), map[string]string{"alice@a.test": "alice-pw"})
	b := startMXNode(t, dns, "b.test", "127.0.0.3", t.TempDir(), map[string]string{"bob@b.test": "bob-pw"})
	a.submit(t, "alice@a.test", "alice-pw", []string{"nobody@b.test", "bob@b.test"},
		message("alice@a.test", "nobody@b.test", "lost", "Hello?"))
	got := a.waitInbox(t, "alice@a.test", 1, 10*time.Second)
	dsn := got[0]
	for _, want := range []string{
		"multipart/report; report-type=delivery-status", "Final-Recipient: rfc822; nobody@b.test",
		"Action: failed", "Status: 5.", "Remote-MTA: dns; mx.b.test", "Diagnostic-Code: smtp; 55",
		"Subject: lost", "Reporting-MTA: dns; mx.a.test",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, "bob@b.test\r\nAction") {
		t.Errorf("DSN reports bob, who got the message:\n%s", dsn)
	}
	b.waitInbox(t, "bob@b.test", 1, 10*time.Second)
	waitQueueEmpty(t, a)
}

// TestRelaySurvivesSIGKILL: the sender, a tern serve child process, is
// killed in the middle of an attempt; once restarted it takes its lease
// back at once (not after the lease's half hour) and delivers the
// message, exactly once.
func TestRelaySurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server; skipped with -short")
	}
	needPort25(t)
	dns := relayDNS(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tern")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/tern").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	subAddr := l.Addr().String()
	l.Close()
	conf := filepath.Join(dir, "tern.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`hostname = "mx.a.test"
data_dir = %q
[listen]
smtp = "127.0.0.2:25"
submission = %q
submissions = ""
imap = ""
imaps = ""
pop3 = ""
pop3s = ""
http = ""
[dns]
nameserver = %q
[relay]
enabled = true
retry_delay = "200ms"
`, filepath.Join(dir, "data"), subAddr, dns.Addr())), 0o600)
	tern := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tern %v: %v\n%s", args, err, out)
		}
	}
	tern("", "domain", "add", "--config", conf, "a.test")
	tern("alice-pw\n", "user", "add", "--config", conf, "--password-stdin", "alice@a.test")
	serve := func(round int) *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--config", conf)
		cmd.Stderr, _ = os.Create(filepath.Join(dir, fmt.Sprintf("serve-%d.log", round)))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", subAddr); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tern serve did not listen on %s", subAddr)
			}
		}
		return cmd
	}
	// c.test's MX accepts connections and never answers: the sender is
	// killed in the middle of an attempt, holding the entry's lease.
	silent, err := net.Listen("tcp", "127.0.0.4:25")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	a := serve(0)
	submitTo(t, subAddr, "alice@a.test", "alice-pw", []string{"carol@c.test"}, message("alice@a.test", "carol@c.test", "kill", "Hi Carol"))
	var hung net.Conn
	select {
	case hung = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the sender never tried c.test")
	}
	st, err := sqlite.Open(filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := st.ListQueue(context.Background())
	st.Close()
	if err != nil || len(q) != 1 || q[0].LeaseOwner == "" {
		t.Fatalf("queue during the attempt: %+v %v", q, err)
	}
	a.Process.Signal(syscall.SIGKILL)
	a.Wait()
	silent.Close()
	hung.Close()
	c := startMXNode(t, dns, "c.test", "127.0.0.4", t.TempDir(), map[string]string{"carol@c.test": "carol-pw"})
	serve(1)
	got := c.waitInbox(t, "carol@c.test", 1, 15*time.Second)
	if !strings.Contains(got[0], "Hi Carol") {
		t.Fatalf("carol got:\n%s", got[0])
	}
	time.Sleep(500 * time.Millisecond)
	if got := c.waitInbox(t, "carol@c.test", 1, time.Second); len(got) != 1 {
		t.Errorf("carol got %d copies", len(got))
	}
}
