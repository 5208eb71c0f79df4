package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/storetest"
)

// benchAccount adds the account the benchmarks deliver to.
func benchAccount(b *testing.B, s *Store) int64 {
	ctx := b.Context()
	if err := s.AddDomain(ctx, "example.com"); err != nil {
		b.Fatal(err)
	}
	a, err := s.AddAccount(ctx, store.Account{Address: "u@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	return a.ID
}

// deliverMany delivers n distinct messages of size bytes from writers
// goroutines into the account's INBOX.
func deliverMany(ctx context.Context, s *Store, account int64, writers, n, size int) error {
	return storetest.DeliverMany(ctx, []store.Store{s}, []int64{account}, writers, n, size)
}

// runDeliveries delivers b.N messages of size bytes from writers
// goroutines into one mailbox and reports msgs/s.
func runDeliveries(b *testing.B, s *Store, writers, size int) {
	account := benchAccount(b, s)
	b.ResetTimer()
	start := time.Now()
	cpu0 := cpuTime()
	io0 := bytesWritten()
	err := deliverMany(b.Context(), s, account, writers, b.N, size)
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	written := bytesWritten() - io0
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(s.writes.Load())/float64(s.commits.Load()), "writes/commit")
	// CPU per delivery stays meaningful when the machine is shared and
	// msgs/s is not.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	// Bytes handed to write(2) per delivery: WAL frames plus checkpoint
	// copies plus blob files. When the disk is shared and busy its write
	// bandwidth, not fsync latency, bounds group commit.
	if written > 0 {
		b.ReportMetric(float64(written)/float64(b.N), "written-B/msg")
	}
}

// BenchmarkDeliver measures durable deliveries of 4 KB messages, one
// target each; group commit should make 64 writers several times faster
// than one.
func BenchmarkDeliver(b *testing.B) {
	for _, w := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			s := openTest(b, b.TempDir())
			defer s.Close()
			runDeliveries(b, s, w, 4<<10)
		})
	}
}

// BenchmarkDeliverSize compares keeping a body in the database with
// putting it in its own file, around the inline limit: the measurement
// behind inlineMax.
func BenchmarkDeliverSize(b *testing.B) {
	for _, size := range []int{16 << 10, 64 << 10, 100 << 10, 128 << 10, 192 << 10, 256 << 10} {
		for _, where := range []string{"inline", "file"} {
			for _, w := range []int{1, 64} {
				b.Run(fmt.Sprintf("size=%dK/%s/writers=%d", size>>10, where, w), func(b *testing.B) {
					s := openTest(b, b.TempDir())
					defer s.Close()
					if where == "inline" {
						s.inlineAt = 1 << 30
					} else {
						s.inlineAt = 0
					}
					runDeliveries(b, s, w, size)
				})
			}
		}
	}
}

// BenchmarkFsync gives the disk's baselines beside BenchmarkDeliver:
// append+fdatasync to one file, and one durable new file per message.
func BenchmarkFsync(b *testing.B) {
	buf := storetest.Body(0, 4<<10)
	b.Run("append", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "log"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		start := time.Now()
		for b.Loop() {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := fdatasync(f); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
	b.Run("newfile", func(b *testing.B) {
		dir := b.TempDir()
		i := 0
		start := time.Now()
		for b.Loop() {
			i++
			tmp := filepath.Join(dir, fmt.Sprintf("tmp%d", i))
			f, err := os.Create(tmp)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			if err := os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("msg%d", i))); err != nil {
				b.Fatal(err)
			}
			if err := syncDir(dir); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
}

// BenchmarkRead measures the reads a session does on a 10,000-message
// mailbox: SELECT (ListMessages, MailboxStatus) and a FETCH of 100
// messages with their parsed info (GetMessages).
func BenchmarkRead(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	const n = 10000
	account := benchAccount(b, s)
	if err := deliverMany(b.Context(), s, account, 64, n, 2<<10); err != nil {
		b.Fatal(err)
	}
	mb, err := s.GetMailbox(b.Context(), account, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	uids := make([]uint32, 100)
	for i := range uids {
		uids[i] = uint32(5000 + i)
	}
	b.Run("ListMessages10k", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			ms, err := s.ListMessages(b.Context(), mb.ID)
			if err != nil || len(ms) != n {
				b.Fatal(len(ms), err)
			}
		}
	})
	b.Run("MailboxStatus10k", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := s.MailboxStatus(b.Context(), mb.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetMessages100", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			ms, err := s.GetMessages(b.Context(), mb.ID, uids)
			if err != nil || len(ms) != 100 {
				b.Fatal(len(ms), err)
			}
		}
	})
}

// reportCPU reports the process's CPU time per operation, which a shared
// machine distorts much less than wall time.
func reportCPU(b *testing.B) func() {
	c0 := cpuTime()
	return func() { b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op") }
}
