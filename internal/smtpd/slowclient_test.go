package smtpd

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestSlowCommandLine dribbles a command line a byte at a time, each byte
// well within CommandTimeout: the whole line must arrive within it
// (slowloris). go-smtp's line reader would otherwise take the partial
// line as a command and wait anew for the next.
func TestSlowCommandLine(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, cfg: func(c *Config) { c.CommandTimeout = 500 * time.Millisecond }})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.write("MAIL FROM:<")
	start := time.Now()
	closed := make(chan string)
	go func() {
		b, _ := io.ReadAll(c.r)
		closed <- string(b)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case got := <-closed:
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("cut off after %v, want about 500ms", d)
			}
			if !strings.Contains(got, "421 4.4.2") {
				t.Errorf("got %q, want a 421 timeout reply", got)
			}
			return
		case <-tick.C:
			if time.Since(start) > 5*time.Second {
				t.Fatal("still connected after 5s")
			}
			c.conn.Write([]byte("x"))
		}
	}
}

// TestBDATCutShort closes the connection in the middle of a BDAT LAST
// chunk: the part received must not be delivered as the message.
func TestBDATCutShort(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.write("BDAT 1000 LAST\r\nSubject: cut\r\n\r\nhalf a chu")
	c.conn.Close()
	time.Sleep(100 * time.Millisecond)
	c2 := e.dial()
	c2.cmd("EHLO client.test", 250)
	c2.send("s@remote.test", []string{"alice@example.org"}, message("s@remote.test", "alice@example.org", "whole", "whole\r\n"), 250)
	got := e.inbox("alice@example.org")
	if len(got) != 1 || !strings.Contains(got[0], "Subject: whole") {
		t.Errorf("inbox holds %d messages, want only the whole one: %q", len(got), got)
	}
}
