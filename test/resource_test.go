package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/config"
)

// The resource tests: what a client can make the server hold (connections,
// memory, time) stays within bounds.

// TestResourceIdleConnections opens idle connections across the doors of
// a tern serve child (SMTP after EHLO, IMAP logged in and in IDLE, POP3
// logged in), a third each, and measures what they cost in memory (PSS
// from /proc/PID/smaps_rollup, before and after): TERN_RESOURCE_CONNS of
// them (default 2,000).
//
// Measured (2 cores, Go 1.26, TERN_RESOURCE_CONNS=10000): 10,000 idle
// connections took tern serve from 18 MB to 297 MB, 28 KB each: SMTP
// 16 KB, IMAP in IDLE 44 KB (two goroutines, 16 KiB read and write
// buffers), POP3 23 KB. The test fails above 100 KB per connection of any
// door.
func TestResourceIdleConnections(t *testing.T) {
	t.Parallel()
	n := 2000
	if v := os.Getenv("TERN_RESOURCE_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 30 {
			t.Fatalf("TERN_RESOURCE_CONNS=%q: want a number of connections, at least 30", v)
		}
	}
	raiseFileLimit(t, n+1000) // our end; the child inherits it for its end
	data := t.TempDir()
	c := newChild(t, data, fmt.Sprintf("max_conns = %d\nmax_conns_per_ip = %d\n", n+100, n+100), "smtp", "imap", "pop3")
	// POP3 locks the maildrop: one account per POP3 session.
	perDoor := n / 3
	users := []string{"imap@res.test"}
	for i := range n - 2*perDoor {
		users = append(users, fmt.Sprintf("pop%d@res.test", i))
	}
	addUsers(t, data, "res.test", "pw", users...)
	c.start()
	pid := c.cmd.Process.Pid

	// A few sessions of each kind first, so one-time costs (buffer pools,
	// the first login, code pages) are not counted per connection.
	var conns []net.Conn
	t.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	open := func(kind string, i int) (net.Conn, error) {
		switch kind {
		case "smtp":
			return idleSMTP(c.addrs["smtp"])
		case "imap":
			return idleIMAP(c.addrs["imap"], "imap@res.test")
		default:
			return idlePOP3(c.addrs["pop3"], fmt.Sprintf("pop%d@res.test", i))
		}
	}
	warm := 0
	for _, kind := range []string{"smtp", "imap", "pop3"} {
		for range 5 {
			nc, err := open(kind, len(users)-2-warm)
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			conns = append(conns, nc)
			if kind == "pop3" {
				warm++
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	before := memoryOf(t, pid)

	// The warm-up took the last POP3 accounts.
	kinds := []struct {
		name  string
		count int
	}{{"smtp", perDoor}, {"imap", perDoor}, {"pop3", n - 2*perDoor - warm}}
	// The bound only catches a gross regression (a buffer of message size
	// per session, say); the figures are in the comment above.
	const maxPerConn = 100 // KB
	start := time.Now()
	var mu sync.Mutex
	var failed atomic.Int32
	var firstErr error
	prev := before
	for _, k := range kinds {
		jobs := make(chan int)
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					nc, err := open(k.name, i)
					mu.Lock()
					if err != nil {
						if failed.Add(1) == 1 {
							firstErr = fmt.Errorf("%s %d: %w", k.name, i, err)
						}
					} else {
						conns = append(conns, nc)
					}
					mu.Unlock()
				}
			}()
		}
		for i := range k.count {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		if failed.Load() > 0 {
			t.Fatalf("%d connections failed; first: %v\nserve log:\n%s", failed.Load(), firstErr, tail(c.log(), 20))
		}
		time.Sleep(500 * time.Millisecond)
		m := memoryOf(t, pid)
		perConn := float64(m.pss-prev.pss) / float64(k.count)
		t.Logf("%d idle %s connections: %.1f KB (PSS) each", k.count, k.name, perConn)
		if perConn > maxPerConn {
			t.Errorf("%.1f KB per idle %s connection, want at most %d KB", perConn, k.name, maxPerConn)
		}
		prev = m
	}
	opened := len(conns) - 15
	// Every connection must still be there: none was cut off meanwhile.
	for i, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := nc.Read(b[:]); err != nil && !os.IsTimeout(err) {
			t.Fatalf("connection %d closed by the server while idle: %v", i, err)
		}
	}
	perConn := float64(prev.pss-before.pss) / float64(opened)
	t.Logf("%d idle connections opened in %v; tern serve RSS %d → %d KB, PSS %d → %d KB: %.1f KB (PSS) per connection",
		opened, time.Since(start).Round(time.Millisecond), before.rss, prev.rss, before.pss, prev.pss, perConn)
}

// raiseFileLimit raises RLIMIT_NOFILE to at least n (up to the hard limit).
func raiseFileLimit(t *testing.T, n int) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= uint64(n) {
		return
	}
	if lim.Max < uint64(n) {
		lim.Max = uint64(n) // works as root
	}
	lim.Cur = uint64(n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot raise the open file limit to %d: %v", n, err)
	}
}

type memory struct{ rss, pss int64 } // KB

// memoryOf reads a process's resident and proportional set sizes.
func memoryOf(t *testing.T, pid int) memory {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Skipf("no smaps_rollup: %v", err)
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			m.rss = v
		case "Pss:":
			m.pss = v
		}
	}
	return m
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// idleSMTP opens an SMTP session and leaves it after EHLO.
func idleSMTP(addr string) (net.Conn, error) {
	return idleSession(addr, []step{{"", "220 "}, {"EHLO client.test", "250 "}})
}

// idleIMAP logs in, selects INBOX and starts IDLE.
func idleIMAP(addr, user string) (net.Conn, error) {
	return idleSession(addr, []step{{"", "* OK"}, {"a LOGIN " + user + " pw", "a OK"},
		{"b SELECT INBOX", "b OK"}, {"c IDLE", "+ "}})
}

// idlePOP3 logs in and stays in the TRANSACTION state.
func idlePOP3(addr, user string) (net.Conn, error) {
	return idleSession(addr, []step{{"", "+OK"}, {"USER " + user, "+OK"}, {"PASS pw", "+OK"}})
}

// step sends a line (unless empty) and reads until a line starting with
// want.
type step struct{ send, want string }

func idleSession(addr string, steps []step) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(nc, 512)
	for _, s := range steps {
		if s.send != "" {
			if _, err := io.WriteString(nc, s.send+"\r\n"); err != nil {
				nc.Close()
				return nil, err
			}
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				nc.Close()
				return nil, fmt.Errorf("after %q: %w", s.send, err)
			}
			if strings.HasPrefix(line, s.want) {
				break
			}
			if strings.HasPrefix(line, "* ") || len(line) > 3 && line[3] == '-' {
				continue
			}
			nc.Close()
			return nil, fmt.Errorf("after %q: got %q", s.send, line)
		}
	}
	nc.SetDeadline(time.Time{})
	return nc, nil
}

// TestResourceSlowloris sends a command line one byte at a time, each
// byte well within the timeout but the line never ending: the door must
// cut the client off once the whole line has taken longer than its
// timeout, not wait for each byte anew.
func TestResourceSlowloris(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	s := startServerWith(t, "loris.test", nil, func(c *config.Config) {
		c.Limits.SMTPTimeout.Duration = timeout
		c.Limits.IMAPIdleTimeout.Duration = timeout
		c.Limits.POP3IdleTimeout.Duration = timeout
	})
	addUsersLive(t, s, "u@loris.test")
	for _, tc := range []struct {
		name, door string
		setup      func(*textConn)
	}{
		{"smtp", "smtp", func(r *textConn) {
			r.expect("220")
			r.send("EHLO client.test")
			r.expect("250 ")
			r.sendRaw("MAIL FROM:<")
		}},
		{"imap", "imap", func(r *textConn) {
			r.expect("* OK")
			r.send("a LOGIN u@loris.test pw")
			r.expect("a OK")
			r.sendRaw("b SELECT ")
		}},
		{"imap-idle-done", "imap", func(r *textConn) {
			r.expect("* OK")
			r.send("a LOGIN u@loris.test pw")
			r.expect("a OK")
			r.send("b IDLE")
			r.expect("+")
		}},
		{"pop3", "pop3", func(r *textConn) {
			r.expect("+OK")
			r.sendRaw("USER ")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialText(t, s.Addr(tc.door).String())
			tc.setup(r)
			cut := dribble(r, timeout/4, 6*timeout)
			if cut < 0 {
				t.Fatalf("slowloris client still connected after %v (timeout %v)", 6*timeout, timeout)
			}
			t.Logf("cut off after %v", cut.Round(10*time.Millisecond))
		})
	}
}

// TestResourceHugeSizes announces sizes far over the limits: an IMAP
// literal of 4 GB and an SMTP BDAT chunk of 4 GB. Each must be refused
// from the announcement alone, at once, and without memory growing.
func TestResourceHugeSizes(t *testing.T) {
	t.Parallel()
	s := startServerWith(t, "huge.test", nil, nil)
	addUsersLive(t, s, "u@huge.test")
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	t.Run("imap-append", func(t *testing.T) {
		r := dialText(t, s.Addr("imap").String())
		r.expect("* OK")
		r.send("a LOGIN u@huge.test pw")
		r.expect("a OK")
		r.send("b APPEND INBOX {4000000000}")
		if got := r.expect("b "); !strings.HasPrefix(got, "b NO [TOOBIG]") {
			t.Fatalf("APPEND {4000000000}: %q, want NO [TOOBIG]", got)
		}
		// Still in step: the next command is a command, not literal data.
		r.send("c NOOP")
		r.expect("c OK")
		// A non-synchronising literal is already on its way: the server
		// must refuse it and close rather than read 4 GB.
		r.send("d APPEND INBOX {4000000000+}")
		if got := r.expect("d "); !strings.HasPrefix(got, "d NO [TOOBIG]") {
			t.Fatalf("APPEND {4000000000+}: %q, want NO [TOOBIG]", got)
		}
		r.expect("* BYE")
	})
	t.Run("imap-login-literal", func(t *testing.T) {
		r := dialText(t, s.Addr("imap").String())
		r.expect("* OK")
		r.send("a LOGIN {4000000000}")
		if got := r.expect("a "); !strings.HasPrefix(got, "a BAD") {
			t.Fatalf("LOGIN {4000000000}: %q, want BAD", got)
		}
		r.send("b NOOP")
		r.expect("b OK")
	})
	t.Run("smtp-bdat", func(t *testing.T) {
		r := dialText(t, s.Addr("smtp").String())
		r.expect("220")
		r.send("EHLO client.test")
		r.expect("250 ")
		r.send("MAIL FROM:<s@else.test>")
		r.expect("250")
		r.send("RCPT TO:<u@huge.test>")
		r.expect("250")
		start := time.Now()
		r.send("BDAT 4000000000 LAST")
		if got := r.expect("5"); !strings.HasPrefix(got, "552") {
			t.Fatalf("BDAT 4000000000: %q, want 552", got)
		}
		t.Logf("BDAT 4000000000 refused in %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("smtp-size", func(t *testing.T) {
		r := dialText(t, s.Addr("smtp").String())
		r.expect("220")
		r.send("EHLO client.test")
		r.expect("250 ")
		r.send("MAIL FROM:<s@else.test> SIZE=4000000000")
		if got := r.expect("5"); !strings.HasPrefix(got, "552") {
			t.Fatalf("MAIL SIZE=4000000000: %q, want 552", got)
		}
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use %d → %d KB", before.HeapInuse>>10, after.HeapInuse>>10)
	if grown > 16<<20 {
		t.Errorf("heap grew by %d MB refusing huge sizes", grown>>20)
	}
	if found := storedTokens(t, s.Store(), "u@huge.test"); len(found) != 0 {
		t.Errorf("stored %v", keys(found))
	}
	// The server still serves.
	if err := smtpSendTo(s.Addr("smtp").String(), "u@huge.test", "Subject: after\r\n\r\nafter\r\n"); err != nil {
		t.Fatal(err)
	}
}
