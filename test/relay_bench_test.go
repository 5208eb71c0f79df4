package test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// BenchmarkRelay measures messages per second relayed from one MTA to
// another over loopback: Tern to Tern, Tern to Postfix, and Postfix to
// Postfix as the yardstick. Every message is handed to the sender over one
// SMTP session (submission with AUTH for Tern, port 25 from mynetworks for
// Postfix) and counted once it is in the receiver's store or Maildir.
// Run with a fixed count, e.g. -bench Relay -benchtime 500x.
func BenchmarkRelay(b *testing.B) {
	needPort25(b)
	body := message("alice@a.test", "bob@b.test", "bench", strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 50))
	b.Run("tern-tern", func(b *testing.B) {
		dns := relayDNS(b)
		a := startMXNode(b, dns, "a.test", "127.0.0.2", b.TempDir(), map[string]string{"alice@a.test": "alice-pw"})
		bn := startMXNode(b, dns, "b.test", "127.0.0.3", b.TempDir(), map[string]string{"bob@b.test": "bob-pw"})
		c := submissionClient(b, a.Addr("submission").String(), "alice@a.test", "alice-pw")
		measureRelay(b, c, "alice@a.test", "bob@b.test", body, func() int { return inboxCount(b, bn, "bob@b.test") })
	})
	b.Run("tern-postfix", func(b *testing.B) {
		dns := relayDNS(b)
		p := startPostfix(b)
		a := startMXNode(b, dns, "a.test", "127.0.0.2", b.TempDir(), map[string]string{"alice@a.test": "alice-pw"})
		c := submissionClient(b, a.Addr("submission").String(), "alice@a.test", "alice-pw")
		measureRelay(b, c, "alice@a.test", "pat@p.test", body, p.delivered)
	})
	b.Run("postfix-postfix", func(b *testing.B) {
		p := startPostfix(b)
		startPostfixAt(b, "127.0.0.6", "q.test", "p.test=smtp:[127.0.0.5]:25")
		c, err := smtp.Dial("127.0.0.6:25")
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		measureRelay(b, c, "quinn@q.test", "pat@p.test", body, p.delivered)
	})
}

func submissionClient(tb testing.TB, addr, user, pw string) *smtp.Client {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", user, pw)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// measureRelay sends b.N messages over c and waits until count reaches
// b.N, reporting messages per second end to end.
func measureRelay(b *testing.B, c *smtp.Client, from, to, body string, count func() int) {
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := c.SendMail(from, []string{to}, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	accepted := time.Since(start)
	for deadline := time.Now().Add(5 * time.Minute); count() < b.N; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d relayed after 5 minutes", count(), b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
}

func inboxCount(tb testing.TB, n *mxNode, address string) int {
	ctx := context.Background()
	a, err := n.Store().GetAccount(ctx, address)
	if err != nil {
		tb.Fatal(err)
	}
	mb, err := n.Store().MailboxStatus(ctx, mustMailbox(tb, n, a.ID))
	if err != nil {
		tb.Fatal(err)
	}
	return mb.Messages
}

func mustMailbox(tb testing.TB, n *mxNode, account int64) int64 {
	mb, err := n.Store().GetMailbox(context.Background(), account, "INBOX")
	if err != nil {
		tb.Fatal(err)
	}
	return mb.ID
}
