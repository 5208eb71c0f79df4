package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

// TestCrashLosesNothingAcknowledged runs tern serve as a child process
// under SMTP and IMAP APPEND load, kills it with SIGKILL at random moments,
// restarts it, and finally checks that every message that was acknowledged
// (250 after DATA, OK after APPEND) is stored exactly once, byte for byte,
// and that the store's invariants hold. TERN_CRASH_ROUNDS sets the number
// of rounds (default 20; `make crash` runs 200).
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills a server; skipped with -short")
	}
	rounds := 20
	if v := os.Getenv("TERN_CRASH_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tern")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/tern").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	smtpAddr, imapAddr := freeAddr(t), freeAddr(t)
	conf := filepath.Join(dir, "tern.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`hostname = "mail.crash.test"
data_dir = %q
allow_plaintext_auth = true
[listen]
smtp = %q
imap = %q
submission = ""
submissions = ""
imaps = ""
pop3 = ""
pop3s = ""
http = ""
`, filepath.Join(dir, "data"), smtpAddr, imapAddr)), 0o600)
	tern := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tern %v: %v\n%s", args, err, out)
		}
	}
	tern("", "domain", "add", "--config", conf, "crash.test")
	tern("pw\n", "user", "add", "--config", conf, "--password-stdin", "u@crash.test")

	var mu sync.Mutex
	acked := map[string]string{} // unique token → the exact body sent
	for round := range rounds {
		cmd := exec.Command(bin, "serve", "--config", conf)
		cmd.Stdout = io.Discard
		cmd.Stderr, _ = os.Create(filepath.Join(dir, fmt.Sprintf("serve-%d.log", round)))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitListening(t, smtpAddr)
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ctx.Err() == nil; n++ {
					token := fmt.Sprintf("r%d-w%d-n%d", round, w, n)
					body := fmt.Sprintf("Subject: %s\r\nMessage-ID: <%s@crash.test>\r\n\r\n%s\r\n%s\r\n", token, token, token, strings.Repeat(strings.Repeat("x", 76)+"\r\n", rand.IntN(100)))
					var err error
					if w%3 == 2 {
						err = imapAppend(imapAddr, body)
					} else {
						err = smtpSend(smtpAddr, body)
					}
					if err != nil && round == 0 && n == 0 {
						t.Logf("first attempt of worker %d: %v", w, err)
					}
					if err == nil {
						mu.Lock()
						acked[token] = body
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(150+rand.IntN(350)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		stop()
		wg.Wait()
	}
	if len(acked) == 0 {
		t.Fatal("no message was acknowledged: the load never reached the server")
	}
	if os.Getenv("TERN_CRASH_KEEP") != "" {
		t.Logf("logs in %s", dir)
	}
	tern("", "check", "--config", conf)

	st, err := sqlite.Open(filepath.Join(dir, "data"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	found := storedTokens(t, st, "u@crash.test")
	for token, body := range acked {
		got := found[token]
		if len(got) != 1 {
			t.Errorf("acknowledged message %s stored %d times", token, len(got))
			continue
		}
		if !strings.HasSuffix(got[0], body) {
			t.Errorf("acknowledged message %s differs from what was sent", token)
		}
	}
	t.Logf("%d rounds, %d messages acknowledged, %d stored", rounds, len(acked), len(found))
}

// storedTokens maps each message's Subject to the bodies stored with it.
func storedTokens(t *testing.T, st store.Store, address string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	a, err := st.GetAccount(ctx, address)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.GetMailbox(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	metas, err := st.ListMessages(ctx, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	uids := make([]uint32, len(metas))
	for i, m := range metas {
		uids[i] = m.UID
	}
	msgs, err := st.GetMessages(ctx, mb.ID, uids)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{}
	for _, m := range msgs {
		r, err := st.OpenBlob(ctx, m.BlobID)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		found[m.Info.Envelope.Subject] = append(found[m.Info.Envelope.Subject], string(b))
	}
	return found
}

// imapAppend logs in and appends body with a synchronising literal; nil
// means the server answered OK to the APPEND.
func imapAppend(addr, body string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	expect := func(prefix string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(line, prefix) {
				return nil
			}
			if !strings.HasPrefix(line, "* ") {
				return fmt.Errorf("unexpected %q", line)
			}
		}
	}
	if err := expect("* OK"); err != nil {
		return err
	}
	fmt.Fprintf(c, "a LOGIN u@crash.test pw\r\n")
	if err := expect("a OK"); err != nil {
		return err
	}
	fmt.Fprintf(c, "b APPEND INBOX {%d}\r\n", len(body))
	if err := expect("+"); err != nil {
		return err
	}
	fmt.Fprintf(c, "%s\r\n", body)
	return expect("b OK")
}

// smtpSend sends body to u@crash.test without TLS; nil means 250 after
// DATA.
func smtpSend(addr, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("s@else.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt("u@crash.test", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	return w.Close()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server did not listen on %s", addr)
}
