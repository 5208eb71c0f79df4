package pop3d

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/testenv"
)

// realMessages exercise what clients get wrong: lines that start with
// dots, a line that is only a dot, an empty body, a long line.
var realMessages = []string{
	msg1,
	"From: carol@example.test\r\nSubject: dots\r\n\r\n.\r\n..\r\n...\r\n. \r\n.x\r\n",
	"Subject: empty body\r\n\r\n",
	"Subject: long line\r\n\r\n" + strings.Repeat("0123456789", 2000) + "\r\n",
}

func (e *env) writeCert() string { return testenv.CertFile(e.t, e.cert) }

const poplibScript = `
import os, poplib, ssl, sys
host, port, user, pw, out, mode, cafile = sys.argv[1:8]
poplib._MAXLINE = 1 << 20  # realMessages has a line longer than RFC 5322 allows
if mode == "stls":
    p = poplib.POP3(host, int(port), timeout=20)
    p.stls(ssl.create_default_context(cafile=cafile))
elif mode == "ssl":
    p = poplib.POP3_SSL(host, int(port), context=ssl.create_default_context(cafile=cafile), timeout=20)
else:
    p = poplib.POP3(host, int(port), timeout=20)
caps = p.capa()
assert "UIDL" in caps and "TOP" in caps, caps
p.user(user)
p.pass_(pw)
n, size = p.stat()
uidl = p.uidl()[1]
assert len(uidl) == n, uidl
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    with open(os.path.join(out, str(i)), "wb") as f:
        f.write(b"".join(l + b"\r\n" for l in lines))
    top = p.top(i, 0)[1]
    assert top == lines[:len(top)], (top, lines)
    p.dele(i)
p.quit()
`

func TestPythonPoplib(t *testing.T) {
	py := testenv.LookPath(t, "python3")
	for _, mode := range []string{"plain", "stls", "ssl"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, Config{AllowPlaintextAuth: mode == "plain"}, mode != "plain")
			for _, m := range realMessages {
				e.put(m)
			}
			out := t.TempDir()
			addr, ca := e.addr, ""
			if mode != "plain" {
				ca = e.writeCert()
			}
			if mode == "ssl" {
				addr = e.tls
			}
			host, port, _ := net.SplitHostPort(addr)
			cmd := exec.Command(py, "-c", poplibScript, host, port, testUser, testPass, out, mode, ca)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("poplib: %v\n%s", err, b)
			}
			for i, m := range realMessages {
				got, err := os.ReadFile(filepath.Join(out, fmt.Sprint(i+1)))
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != m {
					t.Errorf("message %d: poplib got %q, want %q", i+1, trunc(got), trunc([]byte(m)))
				}
			}
			if got := e.uids(); len(got) != 0 {
				t.Errorf("store has %v after poplib deleted all", got)
			}
		})
	}
}

func TestCurl(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	e := newEnv(t, Config{}, true)
	for _, m := range realMessages {
		e.put(m)
	}
	ca := e.writeCert()
	_, port, _ := net.SplitHostPort(e.addr)
	_, tlsPort, _ := net.SplitHostPort(e.tls)
	run := func(args ...string) []byte {
		t.Helper()
		args = append([]string{"-sS", "--max-time", "20", "--cacert", ca, "-u", testUser + ":" + testPass}, args...)
		out, err := exec.Command(curl, args...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("curl %q: %v\n%s", args, err, stderr)
		}
		return out
	}
	// STLS on the plain port, required.
	list := run("--ssl-reqd", "pop3://127.0.0.1:"+port+"/")
	var want bytes.Buffer
	for i, m := range realMessages {
		fmt.Fprintf(&want, "%d %d\r\n", i+1, len(m))
	}
	if string(list) != want.String() {
		t.Errorf("curl LIST = %q, want %q", list, want.String())
	}
	for i, m := range realMessages {
		if got := run("--ssl-reqd", fmt.Sprintf("pop3://127.0.0.1:%s/%d", port, i+1)); string(got) != m {
			t.Errorf("curl RETR %d = %q, want %q", i+1, trunc(got), trunc([]byte(m)))
		}
		if got := run(fmt.Sprintf("pop3s://127.0.0.1:%s/%d", tlsPort, i+1)); string(got) != m {
			t.Errorf("curl pop3s RETR %d = %q, want %q", i+1, trunc(got), trunc([]byte(m)))
		}
	}
	run("-X", "DELE", "-I", "pop3s://127.0.0.1:"+tlsPort+"/1")
	if got := e.uids(); len(got) != len(realMessages)-1 {
		t.Errorf("after curl DELE the store has %v", got)
	}
}

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func TestFetchmail(t *testing.T) {
	fm := testenv.LookPath(t, "fetchmail")
	t.Run("plain", func(t *testing.T) { testFetchmail(t, fm, false) })
	t.Run("stls", func(t *testing.T) { testFetchmail(t, fm, true) })
}

func testFetchmail(t *testing.T, fm string, useTLS bool) {
	e := newEnv(t, Config{AllowPlaintextAuth: !useTLS}, useTLS)
	// fetchmail splits lines longer than its buffer, so the long line is
	// kept to RFC 5322 §2.1.1's 998 octets here.
	messages := slices.Clone(realMessages)
	messages[3] = "Subject: long line\r\n\r\n" + strings.Repeat("x", 998) + "\r\n.\r\n"
	var uids []uint32
	for _, m := range messages {
		uids = append(uids, e.put(m))
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	// The MDA writes each message to its own file; fetchmail's own
	// additions (a Received line, CR stripping, address rewriting) are
	// turned off so what arrives can be compared byte for byte.
	rc := fmt.Sprintf(`set no bouncemail
set no syslog
set invisible
poll %s service %s protocol pop3 uidl no envelope
  user "%s" there with password "%s" is "nobody" here
  fetchall no keep no rewrite no stripcr no forcecr sslproto ''
  mda "sh -c 'cat > $(mktemp %s/msg.XXXXXXXX)'"
`, host, port, testUser, testPass, out)
	if useTLS {
		rc = strings.Replace(rc, "sslproto ''", fmt.Sprintf("sslproto 'tls1.2+' sslcertck sslcertfile %q sslcommonname pop.example.test", e.writeCert()), 1)
	}
	rcPath := filepath.Join(dir, "fetchmailrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fm, "-N", "-v", "-f", rcPath, "--idfile", filepath.Join(dir, "ids"), "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	b, err := cmd.CombinedOutput()
	t.Logf("fetchmail:\n%s", b)
	if err != nil {
		t.Fatalf("fetchmail: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(out, "msg.*"))
	if err != nil {
		t.Fatal(err)
	}
	// The MDA's files carry no order: compare the sets of messages.
	var got []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(b))
	}
	want := slices.Clone(messages)
	slices.Sort(got)
	slices.Sort(want)
	if len(got) != len(want) {
		t.Fatalf("fetchmail delivered %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("fetchmail delivered %q, want %q", trunc([]byte(got[i])), trunc([]byte(want[i])))
		}
	}
	if got := e.uids(); len(got) != 0 {
		t.Errorf("store has %v after fetchmail deleted all of %v", got, uids)
	}
}
