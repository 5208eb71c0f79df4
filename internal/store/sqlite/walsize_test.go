package sqlite

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

func TestWALBytesPerMessage(t *testing.T) {
	for _, w := range []int{1, 32} {
		dir := t.TempDir()
		s := openTest(t, dir)
		ctx := t.Context()
		s.AddDomain(ctx, "example.com")
		a, _ := s.AddAccount(ctx, store.Account{Address: "u@example.com"})
		deliverN := func(base, n int) {
			var wg sync.WaitGroup
			for g := range w {
				wg.Go(func() {
					for i := g; i < n; i += w {
						b, _ := s.Spool(ctx, bytes.NewReader(benchBody(base+i, 4096)), 1<<20)
						if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
		}
		deliverN(0, 5000)
		c0 := s.commits.Load()
		w0, d0 := procIO(t)
		deliverN(10000, 2000)
		w1, d1 := procIO(t)
		t.Logf("writers %d: %d commits, %.0f bytes written/msg, %.0f bytes to disk/msg", w, s.commits.Load()-c0, float64(w1-w0)/2000, float64(d1-d0)/2000)
		s.Close()
	}
}

// procIO returns the bytes this process wrote (write syscalls) and those
// that reached the block layer.
func procIO(t *testing.T) (wchar, writeBytes int64) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		fmt.Sscanf(l, "wchar: %d", &wchar)
		fmt.Sscanf(l, "write_bytes: %d", &writeBytes)
	}
	return
}
