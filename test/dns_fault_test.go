package test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/config"
)

// TestFaultDNSTimeout: the sender's nameserver stops answering. A queued
// message is deferred with a last error that names the timed-out MX
// lookup, stays queued, and is delivered once the nameserver answers
// again.
func TestFaultDNSTimeout(t *testing.T) {
	needPort25(t)
	dns := relayDNS(t)
	silent := dnsGate(t, dns.Addr())
	silent.Store(true)
	a := startMXNodeWith(t, dns, "a.test", "127.0.0.2", t.TempDir(), map[string]string{"alice@a.test": "alice-pw"},
		func(c *config.Config) { c.DNS.Nameserver = silent.addr })
	b := startMXNode(t, dns, "b.test", "127.0.0.3", t.TempDir(), map[string]string{"bob@b.test": "bob-pw"})

	a.submit(t, "alice@a.test", "alice-pw", []string{"bob@b.test"}, message("alice@a.test", "bob@b.test", "dns", "Hi Bob"))
	ctx := context.Background()
	// One query times out after 5 s (mx.Config.Timeout's default).
	for deadline := time.Now().Add(12 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		q, err := a.Store().ListQueue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) != 1 {
			t.Fatalf("%d queue entries, want the message still queued", len(q))
		}
		if q[0].Attempts >= 1 {
			e := q[0]
			if !strings.Contains(e.LastError, "b.test") || !strings.Contains(e.LastError, "MX lookup") || !strings.Contains(e.LastError, "timeout: nameserver "+silent.addr+" did not answer") {
				t.Errorf("last error %q does not say the MX lookup of b.test timed out", e.LastError)
			}
			if len(e.Recipients) != 1 || e.Recipients[0].Address != "bob@b.test" {
				t.Errorf("recipients %+v, want bob@b.test still queued", e.Recipients)
			}
			t.Logf("deferred: %s", e.LastError)
			_, evs, err := a.Store().GetQueueEntry(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, ev := range evs {
				kinds = append(kinds, ev.Kind)
			}
			if j := strings.Join(kinds, " "); !strings.Contains(j, "lookup") || !strings.Contains(j, "deferred") {
				t.Errorf("journey %q lacks the failed lookup or the deferral", j)
			}
			break
		}
		if time.Now().After(deadline) {
			a.dumpQueue(t)
			t.Fatal("no deferral")
		}
	}
	if got := b.waitInbox(t, "bob@b.test", 0, 0); len(got) != 0 {
		t.Fatalf("bob has %d messages while b.test could not be looked up", len(got))
	}

	silent.Store(false)
	// An attempt already waiting on a dropped query times out first.
	got := b.waitInbox(t, "bob@b.test", 1, 15*time.Second)
	if !strings.Contains(got[0], "Hi Bob") {
		t.Fatalf("bob got:\n%s", got[0])
	}
	waitQueueEmpty(t, a)
}

// gate is a UDP relay to a DNS server that drops every query while it
// is set: to its clients, a nameserver that stopped answering.
type gate struct {
	atomic.Bool
	addr string
}

// dnsGate starts a gate in front of the DNS server at upstream.
func dnsGate(t *testing.T, upstream string) *gate {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	g := &gate{addr: pc.LocalAddr().String()}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if g.Load() {
				continue // read, never answered
			}
			query := append([]byte(nil), buf[:n]...)
			go func() {
				c, err := net.Dial("udp", upstream)
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(query); err != nil {
					return
				}
				resp := make([]byte, 65535)
				m, err := c.Read(resp)
				if err != nil {
					return
				}
				pc.WriteTo(resp[:m], from)
			}()
		}
	}()
	return g
}
