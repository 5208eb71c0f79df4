package relay

import (
	"sync"
	"time"
)

// pool keeps connections that finished a transaction cleanly, so the next
// message to the same address skips the connect, greeting, EHLO and TLS
// handshake (RFC 5321 §3.3 allows many transactions per session). A
// pooled connection is checked with RSET before reuse, since the peer may
// have closed it meanwhile.
type pool struct {
	max  int           // idle connections per address
	idle time.Duration // how long one may wait unused

	mu    sync.Mutex
	conns map[string][]pooled
}

type pooled struct {
	c     *client
	since time.Time
	sec   string // how the session is protected
}

func newPool(max int, idle time.Duration) *pool {
	return &pool{max: max, idle: idle, conns: map[string][]pooled{}}
}

// get returns an idle connection to addr, or nil.
func (p *pool) get(addr string) (*client, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		l := p.conns[addr]
		if len(l) == 0 {
			return nil, ""
		}
		e := l[len(l)-1]
		p.conns[addr] = l[:len(l)-1]
		if time.Since(e.since) < p.idle {
			return e.c, e.sec
		}
		go e.c.quit()
	}
}

// put keeps c for reuse, or says goodbye when the address has enough.
func (p *pool) put(addr string, c *client, sec string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns[addr]) >= p.max {
		go c.quit()
		return
	}
	p.conns[addr] = append(p.conns[addr], pooled{c: c, since: time.Now(), sec: sec})
}

// expire closes connections idle too long; closeAll closes every one.
func (p *pool) expire() { p.sweep(false) }

func (p *pool) closeAll() { p.sweep(true) }

func (p *pool) sweep(all bool) {
	p.mu.Lock()
	var old []*client
	for addr, l := range p.conns {
		keep := l[:0]
		for _, e := range l {
			if all || time.Since(e.since) >= p.idle {
				old = append(old, e.c)
			} else {
				keep = append(keep, e)
			}
		}
		if len(keep) == 0 {
			delete(p.conns, addr)
		} else {
			p.conns[addr] = keep
		}
	}
	p.mu.Unlock()
	for _, c := range old {
		c.quit()
	}
}
