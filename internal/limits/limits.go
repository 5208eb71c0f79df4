// Package limits holds the per-IP limiters the doors share: how many
// connections are open in total and per client network.
package limits

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// Key returns the network a client address is counted under: the address
// itself for IPv4 (IPv4-mapped IPv6 included), its /64 for IPv6, because a
// single IPv6 host commonly holds a whole /64 (RFC 6177) and could
// otherwise take a fresh address for every connection.
func Key(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p
	}
	p, _ := ip.Prefix(ip.BitLen()) // invalid Addr gives the zero Prefix
	return p
}

// ConnLimiter bounds open connections in total and per client network.
// It is safe for concurrent use.
type ConnLimiter struct {
	total, perIP int

	mu    sync.Mutex
	open  int
	byKey map[netip.Prefix]int
}

// NewConnLimiter returns a limiter allowing total open connections and
// perIP from one client network (see Key). A limit of zero or less means
// no limit.
func NewConnLimiter(total, perIP int) *ConnLimiter {
	return &ConnLimiter{total: total, perIP: perIP, byKey: make(map[netip.Prefix]int)}
}

// Acquire counts a new connection from ip. When a limit is reached it
// returns ok false and counts nothing; otherwise release must be called
// once the connection closes (calling it again does nothing).
func (l *ConnLimiter) Acquire(ip netip.Addr) (release func(), ok bool) {
	k := Key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total > 0 && l.open >= l.total || l.perIP > 0 && l.byKey[k] >= l.perIP {
		return func() {}, false
	}
	l.open++
	l.byKey[k]++
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.open--
		if n := l.byKey[k] - 1; n > 0 {
			l.byKey[k] = n
		} else {
			delete(l.byKey, k) // keeps the map as small as the open set
		}
	}, true
}

// Open returns the number of connections counted now.
func (l *ConnLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}
