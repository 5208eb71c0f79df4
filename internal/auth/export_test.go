package auth

import (
	"context"
	"time"

	"github.com/emersion/go-sasl"
)

// Test hooks, net/http style: production code keeps no settable globals.

func (a *Authenticator) SetNow(now func() time.Time) { a.now = now }

func (a *Authenticator) SetSleep(f func(context.Context, time.Duration)) { a.sleep = f }

func (a *Authenticator) SetVerify(f func(hash, password string) bool) { a.verifyHash = f }

func (a *Authenticator) Tracked() (cache, ips, users int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cache), len(a.failIP), len(a.failUser)
}

var Sleep = sleep

// NewSCRAMServer is NewSASLServer("SCRAM-SHA-256", nil, l) with a fixed
// server nonce, such as RFC 7677's test vector's.
func NewSCRAMServer(l SCRAMLogin, nonce string) sasl.Server {
	s := newSCRAMServer(l)
	s.nonce = func() string { return nonce }
	return s
}
