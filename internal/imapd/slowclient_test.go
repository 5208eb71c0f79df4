package imapd

import (
	"io"
	"testing"
	"time"
)

// TestSlowCommandLine dribbles a command line a byte at a time, each byte
// well within IdleTimeout: the whole line must arrive within it, so the
// session is cut off (slowloris), with BYE.
func TestSlowCommandLine(t *testing.T) {
	e := newEnv(t, envOpts{plain: true, cfg: Config{IdleTimeout: 500 * time.Millisecond}})
	c := e.login()
	c.Conn.Write([]byte("a1 SELECT "))
	start := time.Now()
	closed := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(c.R)
		closed <- b
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case b := <-closed:
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("cut off after %v, want about 500ms", d)
			}
			if string(b) != "* BYE Autologout\r\n" {
				t.Errorf("got %q, want the autologout BYE", b)
			}
			return
		case <-tick.C:
			if time.Since(start) > 5*time.Second {
				t.Fatal("still connected after 5s")
			}
			c.Conn.Write([]byte("x"))
		}
	}
}

// TestAppendCutShort closes the connection in the middle of an APPEND
// literal: nothing may be stored.
func TestAppendCutShort(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	c := e.login()
	c.Send("a1 APPEND INBOX {100}")
	c.Expect("+ ")
	c.Conn.Write([]byte("Subject: cut\r\n\r\nhalf"))
	c.Conn.Close()
	// The session sees EOF and ends; a later one sees no message.
	time.Sleep(100 * time.Millisecond)
	c2 := e.login()
	c2.cmd("a2 NOOP")
	if ms := e.metas("INBOX"); len(ms) != 0 {
		t.Errorf("a cut APPEND stored %d messages", len(ms))
	}
}
