package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/storetest"
)

// deliverSpread delivers n distinct messages of size bytes from writers
// goroutines, spread over the nodes, each into one of the accounts'
// INBOXes in turn.
func deliverSpread(ctx context.Context, nodes []*Store, accounts []int64, writers, n, size int) error {
	stores := make([]store.Store, len(nodes))
	for i, s := range nodes {
		stores[i] = s
	}
	return storetest.DeliverMany(ctx, stores, accounts, writers, n, size)
}

// BenchmarkDeliver measures durable deliveries of 4 KB messages, one
// target each, with 1 and 64 writers on one node and on two nodes
// sharing the database, into one mailbox (every delivery waits for the
// same mailbox row) and into 64 (deliveries to different users run side
// by side). The figures are only meaningful with fsync on.
func BenchmarkDeliver(b *testing.B) {
	for _, nodes := range []int{1, 2} {
		for _, w := range []int{1, 64} {
			for _, mailboxes := range []int{1, 64} {
				if w == 1 && mailboxes > 1 {
					continue
				}
				b.Run(fmt.Sprintf("nodes=%d/writers=%d/mailboxes=%d", nodes, w, mailboxes), func(b *testing.B) {
					schema := newSchema(b)
					var ss []*Store
					for range nodes {
						cfg := schemaConfig(b, schema)
						cfg.MaxConns = defaultMaxConns
						s, err := openConfig(b.Context(), cfg, nil)
						if err != nil {
							b.Fatal(err)
						}
						defer s.Close()
						ss = append(ss, s)
					}
					var accounts []int64
					for range mailboxes {
						accounts = append(accounts, setupAccount(b, ss[0]))
					}
					b.ResetTimer()
					start := time.Now()
					err := deliverSpread(b.Context(), ss, accounts, w, b.N, 4<<10)
					el := time.Since(start)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
				})
			}
		}
	}
}

// BenchmarkListMessages reads a 10,000-message mailbox, as every IMAP
// SELECT does.
func BenchmarkListMessages(b *testing.B) {
	s := openTest(b)
	account := setupAccount(b, s)
	if err := deliverSpread(b.Context(), []*Store{s}, []int64{account}, 16, 10000, 512); err != nil {
		b.Fatal(err)
	}
	mb, err := s.GetMailbox(b.Context(), account, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		ms, err := s.ListMessages(b.Context(), mb.ID)
		if err != nil || len(ms) != 10000 {
			b.Fatal(len(ms), err)
		}
	}
}
