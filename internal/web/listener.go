package web

import (
	"net"

	"github.com/ternmail/tern/internal/limits"
)

// limitedListener closes connections past the door's connection limits
// at once, as the other doors do, before any byte is read.
type limitedListener struct {
	net.Listener
	lim *limits.ConnLimiter
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.lim.Acquire(limits.ClientIP(c.RemoteAddr()))
		if !ok {
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, release: release}, nil
	}
}

// limitedConn releases its place in the limiter when closed.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
