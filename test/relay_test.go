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
	"github.com/ternmail/tern/internal/dnsrecords"
	"github.com/ternmail/tern/internal/dnstest"
	"github.com/ternmail/tern/internal/msgauth"
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
	return startMXNodeWith(t, dns, domain, ip, dataDir, users, nil)
}

// startMXNodeWith is startMXNode with a change to the configuration.
func startMXNodeWith(t testing.TB, dns *dnstest.Server, domain, ip, dataDir string, users map[string]string, mod func(*config.Config)) *mxNode {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "mx." + domain
	cfg.DataDir = dataDir
	cfg.Listen = config.Listen{SMTP: ip + ":25", Submission: ip + ":0"}
	cfg.DNS.Nameserver = dns.Addr()
	cfg.Relay.Enabled = true
	cfg.Relay.RetryDelay = config.Duration{Duration: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", domain)
	}
	// The domain and its users exist before the node listens, as when an
	// admin sets a server up before pointing MX at it: a peer retrying
	// meanwhile must not meet a half-made domain.
	st, err := daemon.OpenStore(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	m := accounts.NewManager(st)
	ctx := context.Background()
	if _, err := st.GetDomain(ctx, domain); errors.Is(err, store.ErrNotFound) {
		if err := m.AddDomain(ctx, domain); err != nil {
			t.Fatal(err)
		}
		for u, pw := range users {
			if _, err := m.AddUser(ctx, u, pw); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	n := &mxNode{Daemon: d, cfg: cfg}
	t.Cleanup(func() { n.stop(t) })
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
	return n.waitMailbox(t, address, "INBOX", want, within)
}

// waitMailbox waits until one of the account's mailboxes holds want
// messages and returns their bodies.
func (n *mxNode) waitMailbox(t testing.TB, address, mailbox string, want int, within time.Duration) []string {
	t.Helper()
	ctx := context.Background()
	st := n.Store()
	a, err := st.GetAccount(ctx, address)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.GetMailbox(ctx, a.ID, mailbox)
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
			t.Fatalf("%s: %d messages in %s after %s, want %d", address, len(metas), mailbox, within, want)
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
	dirA, dirB := t.TempDir(), t.TempDir()
	publishDomain(t, dns, dirA, "a.test", "mx.a.test")
	publishDomain(t, dns, dirB, "b.test", "mx.b.test")
	a := startMXNode(t, dns, "a.test", "127.0.0.2", dirA, map[string]string{"alice@a.test": "alice-pw"})
	b := startMXNode(t, dns, "b.test", "127.0.0.3", dirB, map[string]string{"bob@b.test": "bob-pw"})

	// A field claiming b's name, written by the sender, must not survive.
	forgedAR := "Authentication-Results: mx.b.test; dkim=pass header.d=evil.test\r\n"
	a.submit(t, "alice@a.test", "alice-pw", []string{"bob@b.test"}, forgedAR+message("alice@a.test", "bob@b.test", "hello", "Hi Bob"))
	got := b.waitInbox(t, "bob@b.test", 1, 10*time.Second)
	if !strings.Contains(got[0], "Subject: hello") || !strings.Contains(got[0], "Hi Bob") {
		t.Fatalf("bob got:\n%s", got[0])
	}
	// Signed by a with both keys, verified by b, SPF and DMARC pass.
	checkAuthResults(t, got[0], "mx.b.test", "dkim=pass header.a=ed25519-sha256 header.d=a.test", "dkim=pass header.a=rsa-sha256 header.d=a.test", "spf=pass smtp.mailfrom=alice@a.test", "dmarc=pass header.from=a.test")
	if n := strings.Count(got[0], "DKIM-Signature:"); n != 2 {
		t.Errorf("%d DKIM-Signature fields, want 2 (Ed25519 and RSA):\n%s", n, got[0])
	}
	if !strings.Contains(got[0], "a=ed25519-sha256") || !strings.Contains(got[0], "a=rsa-sha256") {
		t.Errorf("not signed with both algorithms:\n%s", got[0])
	}
	if strings.Contains(got[0], "evil.test") {
		t.Errorf("the forged Authentication-Results field survived:\n%s", got[0])
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
	checkAuthResults(t, got[0], "mx.a.test", "dkim=pass header.a=ed25519-sha256 header.d=b.test", "dkim=pass header.a=rsa-sha256 header.d=b.test", "spf=pass smtp.mailfrom=bob@b.test", "dmarc=pass header.from=b.test")
	// Delivered entries leave the queue; their journey stays.
	waitQueueEmpty(t, a)
	waitQueueEmpty(t, b)
}

// TestRelayDMARC: a host that is not a.test's MX sends as alice@a.test.
// It fails SPF, carries no signature of a.test, and so fails DMARC: with
// p=quarantine the message lands in Junk; with p=reject it is refused
// at the end of data, or filed in Junk when b is configured with
// dmarc_reject = false. Alice's real mail still reaches the INBOX.
func TestRelayDMARC(t *testing.T) {
	needPort25(t)
	dns := relayDNS(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	publishDomain(t, dns, dirA, "a.test", "mx.a.test")
	a := startMXNode(t, dns, "a.test", "127.0.0.2", dirA, map[string]string{"alice@a.test": "alice-pw"})
	b := startMXNode(t, dns, "b.test", "127.0.0.3", dirB, map[string]string{"bob@b.test": "bob-pw"})

	forge := func() error {
		return forgeSend("127.0.0.9", "127.0.0.3:25", "alice@a.test", "bob@b.test",
			message("alice@a.test", "bob@b.test", "forged", "Send money"))
	}
	if err := forge(); err != nil {
		t.Fatalf("p=quarantine: %v", err)
	}
	junk := b.waitMailbox(t, "bob@b.test", "Junk", 1, 10*time.Second)
	checkAuthResults(t, junk[0], "mx.b.test", "dkim=none", "spf=fail", "smtp.mailfrom=alice@a.test", "dmarc=fail", "header.from=a.test")

	dns.Set("_dmarc.a.test", `TXT "v=DMARC1; p=reject"`)
	err := forge()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("p=reject: got %v, want 550 5.7.1", err)
	}
	a.submit(t, "alice@a.test", "alice-pw", []string{"bob@b.test"}, message("alice@a.test", "bob@b.test", "real", "Hi Bob"))
	got := b.waitInbox(t, "bob@b.test", 1, 10*time.Second)
	checkAuthResults(t, got[0], "mx.b.test", "header.d=a.test", "spf=pass", "dmarc=pass")

	b.stop(t)
	b = startMXNodeWith(t, dns, "b.test", "127.0.0.3", dirB, nil, func(c *config.Config) { c.MsgAuth.DMARCReject = false })
	if err := forge(); err != nil {
		t.Fatalf("p=reject with dmarc_reject = false: %v", err)
	}
	junk = b.waitMailbox(t, "bob@b.test", "Junk", 2, 10*time.Second)
	b.waitInbox(t, "bob@b.test", 1, time.Second)
}

// forgeSend sends a message from the address src, as a host other than
// the sender domain's MX would.
func forgeSend(src, addr, from, to, body string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("forger.test"); err != nil {
		return err
	}
	if err := c.SendMail(from, []string{to}, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
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
	// The retry schedule runs at 200 ms units here (1, 5, 15, 30 … units):
	// when c comes up slowly on a loaded machine, the next attempt can be
	// up to 12 s away.
	t.Cleanup(func() {
		if t.Failed() {
			a.dumpQueue(t)
			evs, _ := a.Store().QueueEvents(context.Background(), 1)
			for _, ev := range evs {
				t.Logf("journey: %s %s", ev.Kind, ev.Detail)
			}
		}
	})
	got := c.waitInbox(t, "carol@c.test", 1, 30*time.Second)
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

// publishDomain generates DKIM keys for domain in dataDir and publishes
// every record "tern dns records" would print in dns.
func publishDomain(t testing.TB, dns *dnstest.Server, dataDir, domain, host string) {
	t.Helper()
	keys, err := msgauth.GenerateKeys(dataDir, domain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]string{}
	for _, r := range dnsrecords.Records(dnsrecords.Setup{Domain: domain, Hostname: host, Keys: keys, Ports: dnsrecords.StandardPorts}) {
		z := r.Zone()
		byName[r.Name] = append(byName[r.Name], z[strings.Index(z, " IN ")+4:])
	}
	for name, rrs := range byName {
		if err := dns.Set(name, rrs...); err != nil {
			t.Fatal(err)
		}
	}
}

// checkAuthResults finds the Authentication-Results field of authserv-id
// id in msg and checks it holds every result of want.
func checkAuthResults(t testing.TB, msg, id string, want ...string) {
	t.Helper()
	hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
	hdr = strings.ReplaceAll(hdr, "\r\n\t", " ")
	var fields []string
	for _, l := range strings.Split(hdr, "\r\n") {
		if strings.HasPrefix(l, "Authentication-Results: "+id+";") {
			fields = append(fields, l)
		}
	}
	if len(fields) != 1 {
		t.Errorf("%d Authentication-Results fields of %s, want 1:\n%s", len(fields), id, msg)
		return
	}
	for _, w := range want {
		if !strings.Contains(fields[0], w) {
			t.Errorf("Authentication-Results lacks %q: %s", w, fields[0])
		}
	}
}
