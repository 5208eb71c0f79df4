package imapd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/testenv"
)

// TestMbsync syncs the account with a local Maildir both ways: server
// messages and flags down, a local message, flag and deletion up.
func TestMbsync(t *testing.T) {
	mbsync := testenv.LookPath(t, "mbsync")
	e := newEnv(t, envOpts{tls: true})
	e.put("INBOX", testMsg)
	e.put("INBOX", multipartMsg, store.FlagFlagged)
	e.put("Sent", "Subject: sent\r\n\r\nsent body\r\n", store.FlagSeen)

	dir := t.TempDir()
	certFile := testenv.CertFile(t, e.cert)
	mail := filepath.Join(dir, "mail")
	if err := os.Mkdir(mail, 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.tlsAddr)
	cfg := fmt.Sprintf(`IMAPAccount tern
Host %s
Port %s
User %s
Pass "%s"
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account tern

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, testUser, testPass, certFile, mail, mail)
	cfgFile := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		out, err := exec.Command(mbsync, "-c", cfgFile, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	run()
	inbox := maildirFiles(t, filepath.Join(mail, "INBOX"))
	if len(inbox) != 2 {
		t.Fatalf("local INBOX after first sync: %v", inbox)
	}
	if n := len(maildirFiles(t, filepath.Join(mail, "Sent"))); n != 1 {
		t.Fatalf("local Sent has %d messages", n)
	}
	flagged := 0
	for _, f := range inbox {
		if strings.HasSuffix(f, "F") {
			flagged++
		}
	}
	if flagged != 1 {
		t.Errorf("flags not synced down: %v", inbox)
	}

	// Up: a new local message, \Seen on the first, deletion of the other.
	newMsg := filepath.Join(mail, "INBOX", "cur", "1700000000.local.host:2,S")
	if err := os.WriteFile(newMsg, []byte("Subject: local\r\n\r\nwritten locally\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range inbox {
		p := filepath.Join(mail, "INBOX", f)
		base, _, _ := strings.Cut(filepath.Base(p), ":2,")
		cur := filepath.Join(mail, "INBOX", "cur", base)
		if strings.HasSuffix(f, "F") {
			if err := os.Rename(p, cur+":2,FT"); err != nil { // trashed
				t.Fatal(err)
			}
		} else if err := os.Rename(p, cur+":2,S"); err != nil {
			t.Fatal(err)
		}
	}
	run()
	ms := e.metas("INBOX")
	if len(ms) != 2 {
		t.Fatalf("server INBOX after upload: %+v", ms)
	}
	for _, m := range ms {
		if !hasFlag(m.Flags, store.FlagSeen) {
			t.Errorf("message %d lacks \\Seen: %v", m.UID, m.Flags)
		}
	}
	// Down again: a server-side expunge reaches the Maildir.
	if _, err := e.st.Expunge(context.Background(), e.mailbox("INBOX").ID, []uint32{ms[0].UID}); err != nil {
		t.Fatal(err)
	}
	run()
	if got := maildirFiles(t, filepath.Join(mail, "INBOX")); len(got) != 1 {
		t.Fatalf("local INBOX after server expunge: %v", got)
	}
}

func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Join(sub, e.Name()))
		}
	}
	return out
}
