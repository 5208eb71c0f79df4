package auth

import (
	"net/netip"
	"time"
)

// This file keeps the Authenticator's memory: the success cache and the
// failure counts, each bounded by Config.MaxTracked.

// cached reports whether e was verified within CacheTTL.
func (a *Authenticator) cached(e cacheEntry) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.cache[e]
	if ok && a.now().After(exp) {
		delete(a.cache, e)
		ok = false
	}
	return ok
}

// remember caches a successful verification.
func (a *Authenticator) remember(e cacheEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if _, ok := a.cache[e]; !ok && len(a.cache) >= a.cfg.MaxTracked {
		evict(a.cache, func(exp time.Time) time.Time { return exp }, now)
	}
	a.cache[e] = now.Add(a.cfg.CacheTTL)
}

// throttled reports whether the IP network or the username has reached
// MaxFailures within FailureWindow.
func (a *Authenticator) throttled(ip netip.Prefix, user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.throttledAt(ip, user, a.now())
}

func (a *Authenticator) throttledAt(ip netip.Prefix, user string, now time.Time) bool {
	return a.count(a.failIP[ip], now) >= a.cfg.MaxFailures ||
		a.count(a.failUser[user], now) >= a.cfg.MaxFailures
}

// settle records the outcome of a check already made (a SCRAM proof) in
// one step under the lock: a throttled IP network or username is refused
// whatever the outcome, a success clears the IP network's failures and
// returns 0, a failure is counted and returns the count, as failed does.
// Being one step, a burst of exchanges that all passed the first throttle
// check gets no more than MaxFailures outcomes past it.
func (a *Authenticator) settle(ip netip.Prefix, user string, ok bool) (n int, throttled bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	switch {
	case a.throttledAt(ip, user, now):
		return 0, true
	case ok:
		delete(a.failIP, ip)
		return 0, false
	}
	return max(bump(a, a.failIP, ip, now), bump(a, a.failUser, user, now)), false
}

// count is f's number of failures still within the window.
func (a *Authenticator) count(f *failures, now time.Time) int {
	if f == nil || now.Sub(f.last) > a.cfg.FailureWindow {
		return 0
	}
	return f.n
}

// failed records a failure for both keys and returns the larger count,
// which sets the delay.
func (a *Authenticator) failed(ip netip.Prefix, user string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	return max(bump(a, a.failIP, ip, now), bump(a, a.failUser, user, now))
}

// bump counts one more failure for k in m, evicting if m is full.
func bump[K comparable](a *Authenticator, m map[K]*failures, k K, now time.Time) int {
	f := m[k]
	if f == nil {
		if len(m) >= a.cfg.MaxTracked {
			// Expired entries go first; past that, the one whose last
			// failure is oldest.
			evict(m, func(f *failures) time.Time { return f.last.Add(a.cfg.FailureWindow) }, now)
		}
		f = &failures{}
		m[k] = f
	}
	f.n = a.count(f, now) + 1
	f.last = now
	return f.n
}

// succeeded clears the failures of the IP network a login succeeded from.
func (a *Authenticator) succeeded(ip netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.failIP, ip)
}

// evict makes room in a full map: it deletes every entry expired at now
// and, if none was, the one expiring first. It scans the map, which is
// fine at MaxTracked's size and only happens when the map is full.
func evict[K comparable, V any](m map[K]V, expiry func(V) time.Time, now time.Time) {
	var (
		oldest    K
		oldestExp time.Time
		found     bool
		removed   bool
	)
	for k, v := range m {
		exp := expiry(v)
		if !exp.After(now) {
			delete(m, k)
			removed = true
			continue
		}
		if !found || exp.Before(oldestExp) {
			oldest, oldestExp, found = k, exp, true
		}
	}
	if !removed && found {
		delete(m, oldest)
	}
}
