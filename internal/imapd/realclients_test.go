package imapd

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/testenv"
)

func TestPythonImaplib(t *testing.T) {
	python := testenv.LookPath(t, "python3")
	e := newEnv(t, envOpts{plain: true})
	e.put("INBOX", testMsg)
	host, port, _ := net.SplitHostPort(e.addr)
	out, err := exec.Command(python, "testdata/imaplib_client.py", host, port, testUser, testPass).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	if n := len(e.metas("INBOX")); n != 1 {
		t.Errorf("INBOX has %d messages after the script", n)
	}
	if n := len(e.metas("Entwürfe")); n != 1 {
		t.Errorf("Entwürfe has %d messages", n)
	}
}

func TestCurl(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	e := newEnv(t, envOpts{plain: true})
	e.put("INBOX", testMsg)
	base := "imap://" + e.addr + "/"
	user := []string{"-s", "-S", "--user", testUser + ":" + testPass}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append(append([]string{}, user...), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run(base); !strings.Contains(out, "INBOX") {
		t.Errorf("curl LIST: %s", out)
	}
	if out := run(base + "INBOX/;UID=1"); !strings.Contains(out, "Hi Alice,") || !strings.Contains(out, "Subject: Hello there") {
		t.Errorf("curl FETCH: %s", out)
	}
	if out := run(base+"INBOX", "-X", "SEARCH SUBJECT Hello"); !strings.Contains(out, "SEARCH 1") {
		t.Errorf("curl SEARCH: %s", out)
	}
}
