package sqlite

import (
	"bytes"
	"os"
	"path/filepath"
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
		s.wdb.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		c0 := s.commits.Load()
		deliverN(10000, 2000)
		fi, _ := os.Stat(filepath.Join(dir, "tern.db-wal"))
		t.Logf("writers %d: %d commits, WAL %d bytes, %.0f bytes/msg", w, s.commits.Load()-c0, fi.Size(), float64(fi.Size())/2000)
		s.Close()
	}
}
