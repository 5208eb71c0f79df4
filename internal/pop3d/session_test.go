package pop3d

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	msg1 = "From: bob@example.test\r\nSubject: one\r\n\r\nfirst line\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n"
	// msg2 ends without a line ending and has a bare-LF line.
	msg2 = "Subject: two\r\n\r\nbody\nbare LF\r\nno final CRLF"
)

func TestTranscript(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	u1 := e.put(msg1)
	u2 := e.put(msg2)
	c := e.dial()

	c.cmd("STAT", "-ERR")
	c.cmd("PASS x", "-ERR") // PASS without USER
	c.Send("CAPA")
	c.Expect("+OK")
	capa := c.multi()
	for _, want := range []string{"TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL SCRAM-SHA-256 PLAIN LOGIN", "IMPLEMENTATION Tern"} {
		if !slices.Contains(capa, want) {
			t.Errorf("CAPA %q lacks %q", capa, want)
		}
	}
	if slices.Contains(capa, "STLS") {
		t.Errorf("CAPA %q offers STLS without TLS configured", capa)
	}
	c.cmd("user "+testUser, "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH] ")
	c.cmd("USER "+testUser, "+OK")
	c.cmd("PASS "+testPass, "+OK maildrop has 2 messages (")

	size1, size2 := len(msg1), len(msg2)
	c.cmd("STAT", fmt.Sprintf("+OK 2 %d", size1+size2))
	c.cmd("LIST", "+OK 2 messages")
	if got, want := c.multi(), []string{fmt.Sprintf("1 %d", size1), fmt.Sprintf("2 %d", size2)}; !slices.Equal(got, want) {
		t.Errorf("LIST = %q, want %q", got, want)
	}
	c.cmd("LIST 2", fmt.Sprintf("+OK 2 %d", size2))
	c.cmd("UIDL", "+OK")
	uidl := []string{fmt.Sprintf("1 %d.%d", e.inbox.UIDValidity, u1), fmt.Sprintf("2 %d.%d", e.inbox.UIDValidity, u2)}
	if got := c.multi(); !slices.Equal(got, uidl) {
		t.Errorf("UIDL = %q, want %q", got, uidl)
	}
	c.cmd("UIDL 1", "+OK "+uidl[0])

	c.cmd("RETR 1", fmt.Sprintf("+OK %d octets", size1))
	if got := string(c.body()); got != msg1 {
		t.Errorf("RETR 1 = %q, want %q", got, msg1)
	}
	c.cmd("RETR 2", "+OK")
	if got := string(c.body()); got != msg2+"\r\n" {
		t.Errorf("RETR 2 = %q, want %q", got, msg2+"\r\n")
	}
	for _, tc := range []struct {
		cmd, want string
	}{
		{"TOP 1 0", "From: bob@example.test\r\nSubject: one\r\n\r\n"},
		{"TOP 1 2", "From: bob@example.test\r\nSubject: one\r\n\r\nfirst line\r\n.starts with a dot\r\n"},
		{"TOP 1 99999999999999999999", msg1},
		{"TOP 2 1", "Subject: two\r\n\r\nbody\n"},
	} {
		c.cmd(tc.cmd, "+OK")
		if got := string(c.body()); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.cmd, got, tc.want)
		}
	}

	c.cmd("NOOP", "+OK")

	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 1", "-ERR message 1 already deleted")
	c.cmd("RETR 1", "-ERR message 1 already deleted")
	c.cmd("STAT", fmt.Sprintf("+OK 1 %d", size2))
	c.cmd("LIST", "+OK 1 messages")
	if got := c.multi(); !slices.Equal(got, []string{fmt.Sprintf("2 %d", size2)}) {
		t.Errorf("LIST after DELE = %q", got)
	}
	c.cmd("RSET", "+OK maildrop has 2 messages")
	c.cmd("DELE 2", "+OK")
	if got, want := e.uids(), []uint32{u1, u2}; !slices.Equal(got, want) {
		t.Fatalf("before QUIT the store has %v, want %v", got, want)
	}
	c.cmd("QUIT", "+OK pop.example.test")
	c.closed()
	if got, want := e.uids(), []uint32{u1}; !slices.Equal(got, want) {
		t.Errorf("after QUIT the store has %v, want %v", got, want)
	}

	// UIDL is stable across sessions.
	c = e.login()
	c.cmd("UIDL 1", "+OK "+uidl[0])
	c.cmd("QUIT", "+OK")
}

func TestSnapshotAndLock(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	e.put(msg1)
	c := e.login()
	e.put(msg2) // arrives during the session: not shown until the next
	c.cmd("STAT", fmt.Sprintf("+OK 1 %d", len(msg1)))

	c2 := e.dial()
	c2.cmd("USER "+testUser, "+OK")
	c2.cmd("PASS "+testPass, "-ERR [IN-USE] ")
	c2.cmd("STAT", "-ERR") // still in AUTHORIZATION

	c.cmd("DELE 1", "+OK")
	c.Conn.Close() // dropped: nothing deleted, lock released
	time.Sleep(100 * time.Millisecond)
	if got := len(e.uids()); got != 2 {
		t.Fatalf("after a dropped connection the store has %d messages, want 2", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c2.Send("USER " + testUser)
		c2.Expect("+OK")
		c2.Send("PASS " + testPass)
		if l := c2.ReadLine(); strings.HasPrefix(l, "+OK maildrop has 2 messages") {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("lock not released: %q", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c2.cmd("QUIT", "+OK")
}

func TestPlaintextRefused(t *testing.T) {
	e := newEnv(t, Config{}, true)
	c := e.dial()
	c.Send("CAPA")
	c.Expect("+OK")
	capa := c.multi()
	if !slices.Contains(capa, "STLS") || slices.Contains(capa, "USER") || slices.ContainsFunc(capa, func(s string) bool { return strings.HasPrefix(s, "SASL") }) {
		t.Errorf("CAPA before TLS = %q, want STLS and no USER or SASL", capa)
	}
	c.cmd("USER "+testUser, "-ERR [AUTH] ")
	c.cmd("PASS "+testPass, "-ERR [AUTH] ")
	c.cmd("AUTH PLAIN "+plain(testUser, testPass), "-ERR [AUTH] ")
	c.cmd("QUIT", "+OK")
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestAuth(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	e.put(msg1)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	c := e.dial()
	c.cmd("AUTH", "+OK")
	if got := c.multi(); !slices.Equal(got, []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}) {
		t.Errorf("AUTH list = %q", got)
	}
	c.cmd("AUTH CRAM-MD5", "-ERR")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd("*", "-ERR authentication cancelled")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd("not base64!", "-ERR")
	c.cmd("AUTH PLAIN "+plain(testUser, "wrong"), "-ERR [AUTH] ")
	c.cmd("AUTH PLAIN =", "-ERR [AUTH] ")
	c.cmd("AUTH PLAIN "+plain(testUser, testPass), "+OK maildrop has 1 messages")
	c.cmd("AUTH PLAIN "+plain(testUser, testPass), "-ERR")
	c.cmd("QUIT", "+OK")

	c = e.dial()
	c.cmd("AUTH plain", "+ ")
	c.cmd(plain(testUser, testPass), "+OK")
	c.cmd("QUIT", "+OK")

	c = e.dial()
	if l := c.cmd("AUTH LOGIN", "+ "); l != "+ "+b64("Username:") {
		t.Errorf("LOGIN prompt %q", l)
	}
	c.cmd(b64(testUser), "+ "+b64("Password:"))
	c.cmd(b64(testPass), "+OK")
	c.cmd("QUIT", "+OK")

	c = e.dial()
	c.cmd("AUTH LOGIN "+b64(testUser), "+ "+b64("Password:"))
	c.cmd(b64(testPass), "+OK")
	c.cmd("QUIT", "+OK")
}

func TestAuthFailuresClose(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	c := e.dial()
	for range maxAuthFailures {
		c.cmd("USER "+testUser, "+OK")
		c.cmd("PASS nope", "-ERR [AUTH] ")
	}
	c.closed()
}

func TestBadCommands(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	c := e.dial()
	c.cmd("NOPE", "-ERR unknown command")
	c.cmd("", "-ERR")
	c.cmd("CAPA "+strings.Repeat("x", 300), "-ERR command line too long")
	c.cmd("CAPA", "+OK") // the long line was discarded whole
	c.multi()
	for i := 3; i < maxBadCommands-1; i++ {
		c.cmd("XYZZY", "-ERR unknown command")
	}
	c.cmd("XYZZY", "-ERR unknown command; too many bad commands")
	c.closed()

	// The limit is on the whole line: 253 octets and CRLF is fine.
	c = e.dial()
	c.cmd("USER "+strings.Repeat("a", maxCommandLen-2-len("USER ")), "+OK")
	c.cmd("USER "+strings.Repeat("a", maxCommandLen-1-len("USER ")), "-ERR command line too long")
}

func TestPipelining(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	e.put(msg1)
	e.put(msg2)
	c := e.dial()
	c.Send("USER " + testUser + "\r\nPASS " + testPass + "\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nDELE 2\r\nQUIT")
	c.Expect("+OK")
	c.Expect("+OK maildrop has 2")
	c.Expect("+OK 2 ")
	c.Expect("+OK")
	if got := string(c.body()); got != msg1 {
		t.Errorf("pipelined RETR = %q", got)
	}
	c.Expect("+OK message 1 deleted")
	c.Expect("+OK message 2 deleted")
	c.Expect("+OK")
	c.closed()
	if got := e.uids(); len(got) != 0 {
		t.Errorf("after QUIT the store has %v", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true, IdleTimeout: 200 * time.Millisecond}, false)
	e.put(msg1)
	c := e.login()
	c.cmd("DELE 1", "+OK")
	c.Expect("-ERR autologout")
	c.closed()
	if got := len(e.uids()); got != 1 {
		t.Errorf("autologout deleted messages: %d left", got)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	e.put(msg1)
	c := e.login()
	c.cmd("DELE 1", "+OK")
	ctx, cancel := contextTimeout(5 * time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.Expect("-ERR [SYS/TEMP] server shutting down")
	c.closed()
	if got := len(e.uids()); got != 1 {
		t.Errorf("shutdown deleted messages: %d left", got)
	}
}

func TestPerIPLimit(t *testing.T) {
	e := newEnv(t, Config{MaxConnsPerIP: 2}, false)
	c1, c2 := e.dial(), e.dial()
	c3 := e.dialRaw()
	c3.Expect("-ERR [SYS/TEMP] too many connections")
	c3.closed()
	c1.cmd("QUIT", "+OK")
	c1.closed()
	time.Sleep(50 * time.Millisecond)
	e.dial().cmd("QUIT", "+OK")
	c2.cmd("QUIT", "+OK")
}

func TestBadArguments(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	e.put(msg1)
	c := e.login()
	// Bad message numbers and arguments.
	for _, tc := range []struct{ cmd, want string }{
		{"RETR 3", "-ERR no such message"},
		{"RETR 0", "-ERR no such message"},
		{"RETR 99999999999999999999999", "-ERR no such message"},
		{"RETR -1", "-ERR invalid message number"},
		{"RETR 1x", "-ERR invalid message number"},
		{"RETR", "-ERR message number required"},
		{"TOP 1", "-ERR usage"},
		{"TOP 1 -1", "-ERR invalid line count"},
		{"LIST 1 2", "-ERR invalid message number"},
		{"USER x", "-ERR already logged in"},
		{"STLS", "-ERR"},
	} {
		c.cmd(tc.cmd, tc.want)
	}
	c.cmd("NOOP", "+OK")
	c.cmd("STAT", "+OK 1 ")
}

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
