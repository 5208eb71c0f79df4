package test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/store/sqlite"
	"github.com/ternmail/tern/internal/testenv"
)

// The fault tests: each fault ends with a clear (temporary) error to the
// client and nothing acknowledged lost.

// TestFaultDiskFull fills a small tmpfs holding the data directory of a
// tern serve child with SMTP deliveries, first with large bodies (blob
// files) until one is refused, then with small ones (inside the
// database): once full, deliveries must be refused with 452 4.3.1 (the
// sender keeps the message and retries) and IMAP APPEND with NO
// [UNAVAILABLE]; no acknowledged message may be missing or truncated,
// `tern check` must pass, and deliveries must succeed again once space is
// freed.
func TestFaultDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs tern serve; skipped with -short")
	}
	requireRoot(t, "mounting a small tmpfs")
	t.Parallel()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt).CombinedOutput(); err != nil {
		if testenv.InCI() {
			t.Fatalf("mount tmpfs: %v\n%s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v\n%s", err, out)
	}
	// Registered after TempDir's cleanup, so it runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	data := filepath.Join(mnt, "data")
	c := newChild(t, data, "", "smtp", "imap")
	c.mustTern("", "domain", "add", "--config", c.conf, "fault.test")
	addUsers(t, data, "fault.test", "pw", "u@fault.test")
	// Room to give back later: freeing it must let deliveries resume.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start()
	addr := c.addrs["smtp"]

	acked := map[string]string{}
	send := func(token string, size int) error {
		// Small bodies live in the database, large ones in blob files
		// (sqlite.inlineMax is 192 KiB): fill both paths.
		body := fmt.Sprintf("Subject: %s\r\n\r\n%s\r\n%s", token, token, strings.Repeat(strings.Repeat("y", 78)+"\r\n", size/80))
		err := smtpSendTo(addr, "u@fault.test", body)
		if err == nil {
			acked[token] = body
		}
		return err
	}
	refused := 0
	for n := 0; refused < 6; n++ {
		if n > 2000 {
			t.Fatalf("16 MiB never filled after %d messages", n)
		}
		size := 4 << 10
		if n%3 == 0 && refused == 0 {
			size = 256 << 10
		}
		err := send(fmt.Sprintf("fill-%d", n), size)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			continue
		case errors.As(err, &se) && se.Code/100 == 4:
			if refused == 0 {
				t.Logf("disk full after %d messages", len(acked))
			}
			if se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
				t.Errorf("message %d (%d bytes) refused with %d %v %s, want 452 4.3.1 (insufficient storage)",
					n, size, se.Code, se.EnhancedCode, se.Message)
			}
			refused++
		case errors.As(err, &se):
			t.Fatalf("message %d refused permanently on a full disk: %v", n, err)
		default:
			t.Fatalf("message %d: %v (a full disk must be a clean 4xx)\nserve log:\n%s", n, err, c.log())
		}
	}
	// IMAP APPEND says the same, in its own words (RFC 5530 UNAVAILABLE).
	r := dialText(t, c.addrs["imap"])
	r.expect("* OK")
	r.send("a LOGIN u@fault.test pw")
	r.expect("a OK")
	body := "Subject: append\r\n\r\n" + strings.Repeat("z", 8<<10) + "\r\n"
	r.send(fmt.Sprintf("b APPEND INBOX {%d}", len(body)))
	r.expect("+")
	r.send(body)
	if got := r.expect("b "); !strings.HasPrefix(got, "b NO [UNAVAILABLE]") {
		t.Errorf("APPEND on a full disk: %q, want NO [UNAVAILABLE]", got)
	}
	r.c.Close()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The store may need a moment (a checkpoint) to use the freed space.
	deadline := time.Now().Add(10 * time.Second)
	recovered := 0
	for n := 0; recovered < 5; n++ {
		err := send(fmt.Sprintf("after-%d", n), 4<<10)
		if err == nil {
			recovered++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries did not resume after space was freed: %v\nserve log:\n%s", err, c.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.stop()
	if out, err := c.tern("", "check", "--config", c.conf); err != nil {
		t.Fatalf("tern check after a full disk: %v\n%s", err, out)
	}
	checkStored(t, data, "u@fault.test", acked)
}

// checkStored opens the store and requires every acknowledged message
// exactly once and byte-identical (after the trace headers prepended).
func checkStored(t *testing.T, dataDir, address string, acked map[string]string) {
	t.Helper()
	st, err := sqlite.Open(dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	found := storedTokens(t, st, address)
	for token, body := range acked {
		got := found[token]
		switch {
		case len(got) != 1:
			t.Errorf("acknowledged message %s stored %d times", token, len(got))
		case !strings.HasSuffix(got[0], body):
			t.Errorf("acknowledged message %s stored truncated or altered: %d bytes for %d sent", token, len(got[0]), len(body))
		}
	}
	if len(found) != len(acked) {
		t.Errorf("%d messages stored, %d acknowledged", len(found), len(acked))
	}
}

// TestFaultDatabaseLocked holds the database's write lock from a second
// handle (as another process would) while a message arrives by SMTP: the
// delivery must end in a temporary error after the store's bounded wait
// (its busy_timeout), not hang and not 250, and succeed once the lock is
// released.
func TestFaultDatabaseLocked(t *testing.T) {
	t.Parallel()
	s := startServerWith(t, "lock.test", nil, nil)
	addUsersLive(t, s, "u@lock.test")
	addr := s.Addr("smtp").String()
	if err := smtpSendTo(addr, "u@lock.test", "Subject: before\r\n\r\nbefore\r\n"); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.cfg.DataDir, "tern.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- smtpSendTo(addr, "u@lock.test", "Subject: locked\r\n\r\nlocked\r\n") }()
	select {
	case err = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("delivery still waiting 40s after the database was locked")
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 4 {
		t.Fatalf("delivery with the database locked: %v, want a 4xx reply", err)
	}
	t.Logf("locked database: %d %v %s after %v", se.Code, se.EnhancedCode, se.Message, time.Since(start).Round(time.Millisecond))
	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := smtpSendTo(addr, "u@lock.test", "Subject: after\r\n\r\nafter\r\n"); err != nil {
		t.Fatalf("delivery after the lock was released: %v", err)
	}
	found := storedTokens(t, s.Store(), "u@lock.test")
	if len(found["locked"]) != 0 || len(found["before"]) != 1 || len(found["after"]) != 1 {
		t.Errorf("stored %d before, %d locked, %d after; want 1, 0, 1", len(found["before"]), len(found["locked"]), len(found["after"]))
	}
}

// TestFaultPeerDropsMidData closes the connection in the middle of DATA,
// of a BDAT chunk and of an IMAP APPEND literal: nothing may be stored,
// and the server goes on.
func TestFaultPeerDropsMidData(t *testing.T) {
	t.Parallel()
	s := startServerWith(t, "drop.test", nil, nil)
	addUsersLive(t, s, "u@drop.test")
	addr := s.Addr("smtp").String()
	for _, tc := range []struct{ name, cmd, part string }{
		{"DATA", "DATA", "Subject: dropped-data\r\n\r\nhalf a bo"},
		{"BDAT", "BDAT 1000 LAST", "Subject: dropped-bdat\r\n\r\nhalf a chunk"},
	} {
		r := dialText(t, addr)
		r.expect("220")
		r.send("EHLO client.test")
		r.expect("250 ")
		r.send("MAIL FROM:<s@else.test>")
		r.expect("250")
		r.send("RCPT TO:<u@drop.test>")
		r.expect("250")
		r.send(tc.cmd)
		if tc.cmd == "DATA" {
			r.expect("354")
		}
		io.WriteString(r.c, tc.part)
		r.c.Close()
	}
	r := dialText(t, s.Addr("imap").String())
	r.expect("* OK")
	r.send("a LOGIN u@drop.test pw")
	r.expect("a OK")
	r.send("b APPEND INBOX {1000}")
	r.expect("+")
	io.WriteString(r.c, "Subject: dropped-append\r\n\r\nhalf a lit")
	r.c.Close()
	if err := smtpSendTo(addr, "u@drop.test", "Subject: after\r\n\r\nafter\r\n"); err != nil {
		t.Fatalf("delivery after dropped peers: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // let the dropped sessions end
	found := storedTokens(t, s.Store(), "u@drop.test")
	if len(found) != 1 || len(found["after"]) != 1 {
		t.Errorf("stored %v, want only the message after", keys(found))
	}
}

// TestFaultTarpit sends a byte less often than the timeout, on every door
// and inside SMTP DATA and an IMAP APPEND literal: each must be cut off
// within about the timeout, with nothing stored.
func TestFaultTarpit(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	s := startServerWith(t, "tarpit.test", nil, func(c *config.Config) {
		c.Limits.SMTPTimeout.Duration = timeout
		c.Limits.IMAPIdleTimeout.Duration = timeout
		c.Limits.POP3IdleTimeout.Duration = timeout
	})
	addUsersLive(t, s, "u@tarpit.test")
	smtpData := func(r *textConn) {
		r.expect("220")
		r.send("EHLO client.test")
		r.expect("250 ")
		r.send("MAIL FROM:<s@else.test>")
		r.expect("250")
		r.send("RCPT TO:<u@tarpit.test>")
		r.expect("250")
		r.send("DATA")
		r.expect("354")
		r.sendRaw("Subject: tarpit\r\n\r\n")
	}
	imapAppend := func(r *textConn) {
		r.expect("* OK")
		r.send("a LOGIN u@tarpit.test pw")
		r.expect("a OK")
		r.send("b APPEND INBOX {100}")
		r.expect("+")
		r.sendRaw("Subject: tarpit\r\n\r\n")
	}
	for _, tc := range []struct {
		name, door string
		setup      func(*textConn)
	}{
		{"smtp-command", "smtp", func(r *textConn) { r.expect("220") }},
		{"smtp-data", "smtp", smtpData},
		{"imap-command", "imap", func(r *textConn) { r.expect("* OK") }},
		{"imap-literal", "imap", imapAppend},
		{"pop3-command", "pop3", func(r *textConn) { r.expect("+OK") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialText(t, s.Addr(tc.door).String())
			tc.setup(r)
			cut := dribble(r, 3*timeout/2, 8*timeout)
			if cut < 0 {
				t.Fatalf("tarpitting client still connected after %v", 8*timeout)
			}
			t.Logf("cut off after %v", cut.Round(10*time.Millisecond))
		})
	}
	t.Cleanup(func() {
		if found := storedTokens(t, s.Store(), "u@tarpit.test"); len(found) != 0 {
			t.Errorf("tarpitted messages stored: %v", keys(found))
		}
	})
}

// dribble writes one byte every interval until the server closes the
// connection (a write or read fails) and returns how long that took, or
// -1 if it still was open after limit.
func dribble(r *textConn, interval, limit time.Duration) time.Duration {
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		// The server's goodbye, if any, then EOF or RST.
		r.c.SetReadDeadline(start.Add(limit))
		io.Copy(io.Discard, r.br)
		close(closed)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			if time.Since(start) >= limit {
				return -1
			}
			return time.Since(start)
		case <-tick.C:
			r.c.SetWriteDeadline(time.Now().Add(time.Second))
			r.c.Write([]byte("x"))
		}
	}
}

// addUsersLive adds accounts to a running in-process server, with password
// "pw" and a cheap hash.
func addUsersLive(t *testing.T, s *server, users ...string) {
	t.Helper()
	ctx := context.Background()
	hash := cheapHash(t, "pw")
	for _, u := range users {
		if _, err := s.Store().AddAccount(ctx, accountWithHash(u, hash)); err != nil {
			t.Fatal(err)
		}
	}
}

// smtpSendTo sends body to one recipient without TLS; nil means 250
// after DATA, an *smtp.SMTPError the server's refusal.
func smtpSendTo(addr, rcpt, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = time.Minute
	if err := c.Mail("s@else.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
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

// textConn is a raw line-protocol client for the exchanges no client
// library would make.
type textConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialText(t *testing.T, addr string) *textConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &textConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *textConn) send(line string) { r.sendRaw(line + "\r\n") }

func (r *textConn) sendRaw(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write %q: %v", s, err)
	}
}

// expect reads lines until one starts with prefix, skipping IMAP
// untagged and SMTP continuation lines; anything else fails the test.
func (r *textConn) expect(prefix string) string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("waiting for %q: %v (read %q)", prefix, err, line)
		}
		if strings.HasPrefix(line, prefix) {
			return strings.TrimRight(line, "\r\n")
		}
		if !strings.HasPrefix(line, "* ") && !(len(line) > 3 && line[3] == '-') {
			r.t.Fatalf("waiting for %q, got %q", prefix, line)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
