package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/testenv"
)

// postfix is a private Postfix instance for p.test: its MX on
// 127.0.0.5:25, mail for p.test filed into one Maildir, mail for a.test
// relayed to Tern on 127.0.0.2:25.
type postfix struct {
	dir, conf, domain string
}

func startPostfix(t testing.TB) *postfix {
	return startPostfixAt(t, "127.0.0.5", "p.test", "a.test=smtp:[127.0.0.2]:25")
}

// startPostfixAt starts a Postfix serving domain (into one Maildir) on
// ip:25, relaying by the given transport_maps entries.
func startPostfixAt(t testing.TB, ip, domain, transport string) *postfix {
	t.Helper()
	bin := testenv.LookPath(t, "postfix")
	// Postfix's processes run as the postfix user: its directories must
	// be reachable, which t.TempDir's are not.
	dir, err := os.MkdirTemp("", "tern-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	p := &postfix{dir: dir, conf: filepath.Join(dir, "etc"), domain: domain}
	for _, d := range []string{"etc", "queue", "data", "mail"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	for _, d := range []string{"data", "mail"} {
		if out, err := exec.Command("chown", "postfix:postfix", filepath.Join(dir, d)).CombinedOutput(); err != nil {
			t.Skipf("chown to postfix: %v %s", err, out)
		}
	}
	mainCf := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
myhostname = mx.%[4]s
mydomain = %[4]s
myorigin = %[4]s
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
biff = no
alias_maps =
alias_database =
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
smtp_dns_support_level = disabled
smtp_host_lookup = native
virtual_mailbox_domains = %[4]s
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = static:%[4]s/
virtual_uid_maps = static:%[2]s
virtual_gid_maps = static:%[3]s
transport_maps = inline:{ %[5]s }
smtp_tls_security_level = may
smtpd_tls_security_level = none
`, dir, idOf(t, "-u"), idOf(t, "-g"), domain, transport)
	// Only the services this test needs; the MX listens on 127.0.0.5,
	// which Postfix does not count among its interfaces, so it is named
	// here rather than in inet_interfaces.
	masterCf := ip + `:25 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
	os.WriteFile(filepath.Join(p.conf, "main.cf"), []byte(mainCf), 0o644)
	os.WriteFile(filepath.Join(p.conf, "master.cf"), []byte(masterCf), 0o644)
	// postfix reports problems only on a terminal or in a log; its exit
	// status is what we have.
	if out, err := exec.Command(bin, "-c", p.conf, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		os.RemoveAll(dir)
		t.Fatalf("postfix start: %v %s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		exec.Command(bin, "-c", p.conf, "stop").Run()
		time.Sleep(200 * time.Millisecond)
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("postfix log:\n%s", log)
		}
		os.RemoveAll(dir)
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := smtp.Dial(ip + ":25"); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix did not listen on %s:25", ip)
		}
	}
	return p
}

func idOf(t testing.TB, flag string) string {
	out, err := exec.Command("id", flag, "postfix").Output()
	if err != nil {
		t.Skipf("no postfix user: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// waitMaildir waits for a message containing want in the Maildir.
func (p *postfix) waitMaildir(t testing.TB, want string, within time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(p.dir, "mail", p.domain, "new", "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), want) {
				return string(b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message with %q in Postfix's Maildir after %s", want, within)
		}
	}
}

// TestRelayPostfixInterop: Tern relays into a real Postfix and accepts
// what Postfix relays to it.
func TestRelayPostfixInterop(t *testing.T) {
	needPort25(t)
	dns := relayDNS(t)
	p := startPostfix(t)
	a := startMXNode(t, dns, "a.test", "127.0.0.2", t.TempDir(), map[string]string{"alice@a.test": "alice-pw"})

	a.submit(t, "alice@a.test", "alice-pw", []string{"pat@p.test"}, message("alice@a.test", "pat@p.test", "to postfix", "Hi Pat"))
	got := p.waitMaildir(t, "Hi Pat", 15*time.Second)
	// Postfix's Received field names the hop from mx.a.test (in plain
	// text: this Postfix offers no STARTTLS).
	if !strings.Contains(got, "Received: from mx.a.test") || !strings.Contains(got, "by mx.p.test (Postfix) with ESMTP") {
		t.Errorf("Postfix got:\n%s", got)
	}
	waitQueueEmpty(t, a)

	// And back: a message handed to Postfix for alice reaches her INBOX.
	c, err := smtp.Dial("127.0.0.5:25")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("pat@p.test", []string{"alice@a.test"},
		strings.NewReader(message("pat@p.test", "alice@a.test", "from postfix", "Hi Alice"))); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	inbox := a.waitInbox(t, "alice@a.test", 1, 15*time.Second)
	if !strings.Contains(inbox[0], "Hi Alice") || !strings.Contains(inbox[0], "Received: from mx.p.test") {
		t.Errorf("alice got:\n%s", inbox[0])
	}
}

// delivered counts the messages in the Maildir.
func (p *postfix) delivered() int {
	files, _ := filepath.Glob(filepath.Join(p.dir, "mail", p.domain, "new", "*"))
	return len(files)
}
