package auth

import (
	"context"
	"time"
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
