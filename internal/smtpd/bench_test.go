package smtpd

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkMXThroughput measures messages accepted per second (250 after
// DATA, so durable) over concurrent sessions into a real SQLite store,
// for a small message (stored inside the database) and a large one (in a
// file of its own).
func BenchmarkMXThroughput(b *testing.B) {
	for _, tc := range []struct{ size, sessions int }{{4096, 1}, {4096, 8}, {102400, 1}, {102400, 8}} {
		b.Run(fmt.Sprintf("size=%d/sessions=%d", tc.size, tc.sessions), func(b *testing.B) {
			sessions := tc.sessions
			e := newEnv(b, envOpts{mode: MX, quiet: true})
			body := message("s@remote.test", "alice@example.org", "bench",
				strings.Repeat(strings.Repeat("z", 76)+"\r\n", tc.size/78))
			tx := "MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
			per := (b.N + sessions - 1) / sessions
			var wg sync.WaitGroup
			errs := make(chan error, sessions)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < sessions; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- benchSession(e.addr, per, tx, body)
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			close(errs)
			for err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(per*sessions)/elapsed.Seconds(), "msgs/s")
		})
	}
}

func benchSession(addr string, n int, tx, body string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	expect := func(code string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, code) {
				return fmt.Errorf("got %q, want %s", line, code)
			}
			if line[3] == ' ' {
				return nil
			}
		}
	}
	if err := expect("220"); err != nil {
		return err
	}
	fmt.Fprintf(w, "EHLO bench.test\r\n")
	w.Flush()
	if err := expect("250"); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		w.WriteString(tx)
		w.Flush()
		for _, code := range []string{"250", "250", "354"} {
			if err := expect(code); err != nil {
				return err
			}
		}
		w.WriteString(body)
		w.WriteString(".\r\n")
		w.Flush()
		if err := expect("250"); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "QUIT\r\n")
	w.Flush()
	return expect("221")
}
