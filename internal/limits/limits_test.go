package limits

import (
	"net/netip"
	"sync"
	"testing"
)

func TestKey(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	}
	for _, tt := range tests {
		if got := Key(netip.MustParseAddr(tt.ip)).String(); got != tt.want {
			t.Errorf("Key(%s) = %s, want %s", tt.ip, got, tt.want)
		}
	}
}

func TestConnLimiterPerIP(t *testing.T) {
	l := NewConnLimiter(10, 2)
	a := netip.MustParseAddr("192.0.2.1")
	r1, ok1 := l.Acquire(a)
	r2, ok2 := l.Acquire(a)
	if !ok1 || !ok2 {
		t.Fatal("first two connections refused")
	}
	if _, ok := l.Acquire(a); ok {
		t.Fatal("third connection from one IPv4 address accepted")
	}
	// Another IPv4 address has its own count; the mapped form is the same
	// address.
	if _, ok := l.Acquire(netip.MustParseAddr("::ffff:192.0.2.1")); ok {
		t.Fatal("IPv4-mapped address not counted as the IPv4 address")
	}
	rb, ok := l.Acquire(netip.MustParseAddr("192.0.2.2"))
	if !ok {
		t.Fatal("other IPv4 address refused")
	}
	if got := l.Open(); got != 3 {
		t.Fatalf("Open() = %d, want 3", got)
	}
	r1()
	r1() // idempotent: must not free a second slot
	if got := l.Open(); got != 2 {
		t.Fatalf("Open() after double release = %d, want 2", got)
	}
	r3, ok := l.Acquire(a)
	if !ok {
		t.Fatal("connection refused after release")
	}
	if _, ok := l.Acquire(a); ok {
		t.Fatal("double release freed two slots")
	}
	r2()
	r3()
	rb()
	if got := l.Open(); got != 0 {
		t.Fatalf("Open() = %d, want 0", got)
	}
	if len(l.byKey) != 0 {
		t.Fatalf("per-IP map not emptied: %v", l.byKey)
	}
}

func TestConnLimiterIPv6Per64(t *testing.T) {
	l := NewConnLimiter(0, 2)
	for _, s := range []string{"2001:db8::1", "2001:db8::2"} {
		if _, ok := l.Acquire(netip.MustParseAddr(s)); !ok {
			t.Fatalf("%s refused", s)
		}
	}
	if _, ok := l.Acquire(netip.MustParseAddr("2001:db8::ffff:1")); ok {
		t.Fatal("third address of the same /64 accepted")
	}
	if _, ok := l.Acquire(netip.MustParseAddr("2001:db8:0:1::1")); !ok {
		t.Fatal("address in another /64 refused")
	}
}

func TestConnLimiterTotal(t *testing.T) {
	l := NewConnLimiter(2, 0)
	var rel []func()
	for i := range 2 {
		r, ok := l.Acquire(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		if !ok {
			t.Fatalf("connection %d refused", i)
		}
		rel = append(rel, r)
	}
	r, ok := l.Acquire(netip.MustParseAddr("198.51.100.1"))
	if ok {
		t.Fatal("connection past the total accepted")
	}
	r() // the no-op release of a refused Acquire is safe to call
	if got := l.Open(); got != 2 {
		t.Fatalf("Open() = %d, want 2", got)
	}
	rel[0]()
	if _, ok := l.Acquire(netip.MustParseAddr("198.51.100.1")); !ok {
		t.Fatal("refused after a release")
	}
}

// TestConnLimiterConcurrent hammers one limiter from many goroutines (run
// with -race): the count never passes a limit and returns to zero.
func TestConnLimiterConcurrent(t *testing.T) {
	const total, perIP, workers, rounds = 20, 3, 16, 500
	l := NewConnLimiter(total, perIP)
	ips := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"),
		netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("2001:db8::2"), // same /64 as the one above
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				ip := ips[(w+i)%len(ips)]
				r, ok := l.Acquire(ip)
				if n := l.Open(); n > total {
					t.Errorf("Open() = %d past total %d", n, total)
				}
				if ok {
					l.mu.Lock()
					n := l.byKey[Key(ip)]
					l.mu.Unlock()
					if n > perIP {
						t.Errorf("%d connections from %s, limit %d", n, Key(ip), perIP)
					}
					r()
					r()
				}
			}
		})
	}
	wg.Wait()
	if got := l.Open(); got != 0 {
		t.Fatalf("Open() = %d after all releases, want 0", got)
	}
	if len(l.byKey) != 0 {
		t.Fatalf("per-IP map not emptied: %v", l.byKey)
	}
}
