package smtpd

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSmuggling sends, inside one DATA, a sequence that some server might
// take for the end of data followed by a second, smuggled transaction.
// go-smtp only ends DATA at CRLF.CRLF; every sequence with a bare CR or LF
// is refused with 554 and the stream stays in step (the next reply is the
// NOOP's). Nothing reaches bob.
func TestSmuggling(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	const smuggled = "MAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
	for _, tc := range []struct {
		name, seq string
		code      int
	}{
		{"LF.LF", "\n.\n", 554},
		{"CR.CR", "\r.\r", 554},
		{"CRLF.LF", "\r\n.\n", 554},
		{"LF.CRLF", "\n.\r\n", 554},
		{"CR.CRLF", "\r.\r\n", 554},
		// go-smtp drops a ".\r" at the start of a line: what remains is
		// one clean CRLF message holding the "smuggled" lines as text.
		{"CRLF.CR", "\r\n.\r", 250},
		{"CRLF.CRCRLF", "\r\n.\r\r\n", 250},
		{"bare LF", "\n", 554},
		{"bare CR", "\r", 554},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial()
			c.cmd("EHLO client.test", 250)
			c.cmd("MAIL FROM:<s@remote.test>", 250)
			c.cmd("RCPT TO:<alice@example.org>", 250)
			c.cmd("DATA", 354)
			c.write("Subject: innocent\r\n\r\nhello" + tc.seq + smuggled + "\r\n.\r\n")
			got, text := c.reply()
			if got != tc.code {
				t.Fatalf("got %d %s, want %d", got, text, tc.code)
			}
			c.cmd("NOOP", 250)
			c.cmd("QUIT", 221)
		})
	}
	if n := len(e.inbox("bob@example.org")); n != 0 {
		t.Errorf("bob got %d smuggled messages", n)
	}
	got := e.inbox("alice@example.org")
	if len(got) != 2 || !strings.Contains(got[0], "\r\nhello\r\nMAIL FROM:<evil@remote.test>\r\n") ||
		!strings.Contains(got[1], "\r\nhello\r\n\r\nMAIL FROM:<evil@remote.test>\r\n") {
		t.Errorf("CRLF.CR cases: %q", got)
	}
}

func TestLongLines(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	// 1500 octets: over RFC 5321's 1000, under our lenient 2000.
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.send("s@remote.test", []string{"alice@example.org"},
		message("s@remote.test", "alice@example.org", "long", strings.Repeat("a", 1500)+"\r\n"), 250)

	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.write("Subject: too long\r\n\r\n" + strings.Repeat("b", 3000) + "\r\n.\r\n")
	c.expect(500) // the message
	if got := c.expect(500); !strings.Contains(got, "Too long line") {
		t.Errorf("got %s", got)
	}
	if !c.closed() {
		t.Error("still open after an over-long line")
	}

	c = e.dial()
	c.write("EHLO " + strings.Repeat("h", 3000) + "\r\n")
	c.expect(500)
	if !c.closed() {
		t.Error("still open after an over-long command")
	}
	if n := len(e.inbox("alice@example.org")); n != 1 {
		t.Errorf("got %d messages, want 1", n)
	}
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, cfg: func(c *Config) {
		c.CommandTimeout = 300 * time.Millisecond
		c.DataTimeout = 300 * time.Millisecond
	}})
	c := e.dial()
	start := time.Now()
	if got := c.expect(421); !strings.HasPrefix(got, "4.4.2") {
		t.Errorf("idle: %s", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle timeout took %v", d)
	}
	if !c.closed() {
		t.Error("still open")
	}

	// Silent in the middle of DATA.
	c = e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.write("Subject: slow\r\n\r\npart")
	c.expect(451)
	if !c.closed() {
		t.Error("still open")
	}

	// A slow but steady sender is not cut off: each block re-arms the
	// data timeout although the whole message takes longer than it.
	c = e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.write("Subject: steady\r\n\r\n")
	for i := 0; i < 6; i++ {
		time.Sleep(100 * time.Millisecond)
		c.write("line\r\n")
	}
	c.write(".\r\n")
	c.expect(250)
}

func TestEarlyTalker(t *testing.T) {
	// Default: tolerated, processed as pipelined commands.
	e := newEnv(t, envOpts{mode: MX})
	c := e.dialRaw()
	c.write("EHLO early.test\r\n")
	c.expect(220)
	c.expect(250)

	// With GreetDelay: refused.
	e = newEnv(t, envOpts{mode: MX, cfg: func(c *Config) { c.GreetDelay = 300 * time.Millisecond }})
	c = e.dialRaw()
	c.write("EHLO early.test\r\n")
	if got := c.expect(554); !strings.Contains(got, "4.3.1") {
		t.Errorf("got %s", got)
	}
	if !c.closed() {
		t.Error("still open")
	}
	// A patient client is served after the delay.
	c = e.dial()
	c.cmd("EHLO patient.test", 250)
}

func TestNotSMTP(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.write("GET / HTTP/1.1\r\nHost: mx.example.org\r\nUser-Agent: test\r\n\r\n")
	if got := c.expect(500); !strings.Contains(got, "not an HTTP server") {
		t.Errorf("got %s", got)
	}
	if !c.closed() {
		t.Error("still open after an HTTP request")
	}

	// Implicit TLS against the plain port.
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(raw, e.clientTLS)
	if err := tc.Handshake(); err == nil {
		t.Error("TLS handshake on the plain port succeeded")
	}
}

func TestConnLimitPerIP(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, cfg: func(c *Config) { c.MaxConnsPerIP = 2 }})
	a := e.dial()
	b := e.dial()
	c := e.dialRaw()
	if got := c.expect(421); !strings.HasPrefix(got, "4.7.0") {
		t.Errorf("third connection: %s", got)
	}
	if !c.closed() {
		t.Error("third connection still open")
	}
	b.cmd("QUIT", 221)
	// The slot is released when the server side closes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := e.dialRaw()
		code, _ := d.reply()
		if code == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot never released")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.cmd("NOOP", 250)
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	idle := e.dial()
	idle.cmd("EHLO idle.test", 250)
	busy := e.dial()
	busy.cmd("EHLO busy.test", 250)
	busy.cmd("MAIL FROM:<s@remote.test>", 250)
	busy.cmd("RCPT TO:<alice@example.org>", 250)
	busy.cmd("DATA", 354)
	busy.write("Subject: during shutdown\r\n\r\nhello\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	if got := idle.expect(421); !strings.HasPrefix(got, "4.3.2") {
		t.Errorf("idle: %s", got)
	}
	// The transaction in progress completes and is acknowledged.
	time.Sleep(100 * time.Millisecond)
	busy.write(".\r\n")
	busy.expect(250)
	busy.expect(421)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := len(e.inbox("alice@example.org")); n != 1 {
		t.Errorf("got %d messages, want 1", n)
	}
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
}
