package pop3d

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

// BenchmarkRetrDeleQuit measures whole POP3 sessions against a real SQLite
// store on loopback: log in, RETR the one message waiting (10 KB), DELE
// it, QUIT (a durable expunge). The maildrop is refilled outside the timer.
// It reports sessions per second and the latency percentiles of a session.
func BenchmarkRetrDeleQuit(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.AddDomain(ctx, testDomain); err != nil {
		b.Fatal(err)
	}
	a, err := st.AddAccount(ctx, store.Account{Address: testUser, PasswordHash: "x"})
	if err != nil {
		b.Fatal(err)
	}
	body := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 160)
	refill := func() {
		blob, err := st.Spool(ctx, strings.NewReader(body), 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Deliver(ctx, &store.Delivery{Blob: blob, Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}}); err != nil {
			b.Fatal(err)
		}
	}
	s, err := newServer(Config{Hostname: "pop.example.test", AllowPlaintextAuth: true}, st, nil, lookupLogin(st), nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(ctx)

	b.SetBytes(int64(len(body)))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		refill()
		b.StartTimer()
		t0 := time.Now()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		// Pipelined as a client would (RFC 2449 PIPELINING).
		fmt.Fprintf(c, "USER %s\r\nPASS x\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n", testUser)
		out, err := io.ReadAll(bufio.NewReader(c))
		c.Close()
		if err != nil || !strings.HasSuffix(string(out), "+OK pop.example.test signing off\r\n") {
			b.Fatalf("session: %v\n%s", err, out)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	if ms, _ := st.ListMessages(ctx, mustInbox(b, st, a.ID)); len(ms) != 0 {
		b.Fatalf("%d messages left", len(ms))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func mustInbox(b testing.TB, st store.Store, accountID int64) int64 {
	mb, err := st.GetMailbox(context.Background(), accountID, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	return mb.ID
}
