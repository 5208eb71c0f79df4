package smtpd

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/testenv"
)

// Real clients: Python's smtplib, swaks and curl, against both doors.

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

const pythonScript = `
import smtplib, ssl, sys
from email.message import EmailMessage
mode, host, port, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
m = EmailMessage()
m["Subject"] = "from python"
m.set_content("hello from smtplib\nsecond line\n")
if mode == "mx":
    m["From"] = "py@remote.test"
    m["To"] = "alice@example.org"
    with smtplib.SMTP(host, port, local_hostname="py.test") as s:
        s.send_message(m)
        try:
            s.sendmail("py@remote.test", ["victim@foreign.test"], "Subject: x\r\n\r\nrelay?\r\n")
            sys.exit("relay accepted")
        except smtplib.SMTPRecipientsRefused as e:
            print("refused", e.recipients["victim@foreign.test"][0])
else:
    ctx = ssl.create_default_context(cafile=cafile)
    m["From"] = "Alice <alice@example.org>"
    m["To"] = "bob@example.org"
    with smtplib.SMTP(host, port, local_hostname="py.test") as s:
        s.starttls(context=ctx)
        try:
            s.login("alice@example.org", "wrong")
            sys.exit("bad login accepted")
        except smtplib.SMTPAuthenticationError as e:
            print("auth failed", e.smtp_code)
        s.login("alice@example.org", sys.argv[5])
        s.send_message(m)
        bad = EmailMessage()
        bad["From"] = "bob@example.org"
        bad["To"] = "bob@example.org"
        bad.set_content("spoof")
        try:
            s.send_message(bad, from_addr="alice@example.org")
            sys.exit("spoofed From accepted")
        except smtplib.SMTPDataError as e:
            print("spoof refused", e.smtp_code)
`

func TestPythonSmtplib(t *testing.T) {
	py := testenv.LookPath(t, "python3")
	script := filepath.Join(t.TempDir(), "send.py")
	if err := os.WriteFile(script, []byte(pythonScript), 0o600); err != nil {
		t.Fatal(err)
	}
	mx := newEnv(t, envOpts{mode: MX})
	h, p := hostPort(t, mx.addr)
	if out := run(t, py, script, "mx", h, p, mx.certFile); !strings.Contains(out, "refused 554") {
		t.Errorf("python mx: %s", out)
	}
	got := mx.inbox("alice@example.org")
	if len(got) != 1 || !strings.Contains(got[0], "from py.test ([127.0.0.1])") || !strings.Contains(got[0], "hello from smtplib\r\nsecond line\r\n") {
		t.Errorf("python mx delivery: %q", got)
	}

	sub := newEnv(t, envOpts{mode: Submission})
	h, p = hostPort(t, sub.addr)
	out := run(t, py, script, "sub", h, p, sub.certFile, testPassword)
	if !strings.Contains(out, "auth failed 535") || !strings.Contains(out, "spoof refused 553") {
		t.Errorf("python submission: %s", out)
	}
	if got := sub.inbox("bob@example.org"); len(got) != 1 || !strings.Contains(got[0], "with ESMTPSA") {
		t.Errorf("python submission delivery: %q", got)
	}
}

func TestSwaks(t *testing.T) {
	swaks := testenv.LookPath(t, "swaks")
	mx := newEnv(t, envOpts{mode: MX})
	run(t, swaks, "--server", mx.addr, "--helo", "swaks.test", "--from", "sw@remote.test",
		"--to", "alice@example.org", "--pipeline", "--header", "Subject: swaks pipelined", "--body", "via swaks")
	run(t, swaks, "--server", mx.addr, "--helo", "swaks.test", "--from", "sw@remote.test",
		"--to", "alice@example.org", "--tls", "--header", "Subject: swaks tls")
	out, err := exec.Command(swaks, "--server", mx.addr, "--from", "sw@remote.test", "--to", "victim@foreign.test").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "554 5.7.1") {
		t.Errorf("swaks relay attempt: %v\n%s", err, out)
	}
	got := mx.inbox("alice@example.org")
	if len(got) != 2 || !strings.Contains(got[0], "via swaks") || !strings.Contains(got[1], "with ESMTPS") {
		t.Errorf("swaks deliveries: %q", got)
	}

	sub := newEnv(t, envOpts{mode: Submission})
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		run(t, swaks, "--server", sub.addr, "--tls", "--auth", mech, "--auth-user", "bob@example.org",
			"--auth-password", testPassword, "--from", "bob@example.org", "--to", "alice@example.org",
			"--header", "From: bob@example.org", "--header", "Subject: swaks "+mech)
	}
	out, err = exec.Command(swaks, "--server", sub.addr, "--tls", "--auth", "PLAIN", "--auth-user", "bob@example.org",
		"--auth-password", "wrong", "--from", "bob@example.org", "--to", "alice@example.org").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "535 5.7.8") {
		t.Errorf("swaks bad password: %v\n%s", err, out)
	}
	// Implicit TLS (465).
	run(t, swaks, "--server", sub.tlsAddr, "--tlsc", "--auth", "PLAIN", "--auth-user", "bob@example.org",
		"--auth-password", testPassword, "--from", "bob@example.org", "--to", "alice@example.org",
		"--header", "From: bob@example.org", "--header", "Subject: swaks 465")
	if n := len(sub.inbox("alice@example.org")); n != 3 {
		t.Errorf("alice got %d messages by submission, want 3", n)
	}
}

func TestCurl(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	msg := filepath.Join(t.TempDir(), "msg.txt")
	body := "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: curl\r\n\r\nsent by curl\r\n"
	if err := os.WriteFile(msg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	mx := newEnv(t, envOpts{mode: MX})
	run(t, curl, "-sS", "smtp://"+mx.addr+"/curl.test", "--mail-from", "c@remote.test",
		"--mail-rcpt", "alice@example.org", "--mail-rcpt", "bob@example.org", "--upload-file", msg)
	if a, b := mx.inbox("alice@example.org"), mx.inbox("bob@example.org"); len(a) != 1 || len(b) != 1 || !strings.HasSuffix(a[0], body) {
		t.Errorf("curl mx: %q %q", a, b)
	}
	out, err := exec.Command(curl, "-sS", "smtp://"+mx.addr, "--mail-from", "c@remote.test",
		"--mail-rcpt", "nobody@example.org", "--upload-file", msg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "550") {
		t.Errorf("curl unknown user: %v %s", err, out)
	}

	sub := newEnv(t, envOpts{mode: Submission})
	run(t, curl, "-sS", "smtp://"+sub.addr, "--ssl-reqd", "--cacert", sub.certFile,
		"--user", "bob@example.org:"+testPassword, "--mail-from", "bob@example.org",
		"--mail-rcpt", "alice@example.org", "--upload-file", msg)
	run(t, curl, "-sS", "smtps://"+sub.tlsAddr, "--cacert", sub.certFile,
		"--user", "bob@example.org:"+testPassword, "--mail-from", "bob@example.org",
		"--mail-rcpt", "alice@example.org", "--upload-file", msg)
	if n := len(sub.inbox("alice@example.org")); n != 2 {
		t.Errorf("curl submission: alice got %d, want 2", n)
	}
}
