package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one logged-in browser. It lives in memory only: a restart
// logs everyone out, which is the price of keeping no session table.
type session struct {
	id        string // 256 random bits, the cookie value
	csrf      string // 256 random bits, required on every POST
	accountID int64
	created   time.Time

	mu       sync.Mutex
	lastUsed time.Time
	flash    flash // shown once on the next page
}

// flash is a one-time notice carried across a redirect.
type flash struct {
	Text  string
	Error bool
}

func (s *session) setFlash(text string, isErr bool) {
	s.mu.Lock()
	s.flash = flash{Text: text, Error: isErr}
	s.mu.Unlock()
}

func (s *session) popFlash() flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = flash{}
	return f
}

// checkCSRF compares a submitted token in constant time.
func (s *session) checkCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

// sessions holds the live sessions, with idle and absolute expiry and a
// bound on their number.
type sessions struct {
	idle, lifetime time.Duration
	max            int
	now            func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(idle, lifetime time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{idle: idle, lifetime: lifetime, max: max, now: now, byID: map[string]*session{}}
}

// randomToken returns 256 random bits, base64url-encoded.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for an account. A fresh ID on every login
// means a session ID planted before login is worthless.
func (ss *sessions) create(accountID int64) *session {
	now := ss.now()
	s := &session{id: randomToken(), csrf: randomToken(), accountID: accountID, created: now, lastUsed: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.byID) >= ss.max {
		ss.sweepLocked(now)
	}
	for len(ss.byID) >= ss.max {
		ss.evictOldestLocked()
	}
	ss.byID[s.id] = s
	return s
}

// get returns the live session with this ID, or nil, and marks it used.
func (ss *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.expired(s, now) {
		delete(ss.byID, id)
		return nil
	}
	s.lastUsed = now
	return s
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.lastUsed) > ss.idle || now.Sub(s.created) > ss.lifetime
}

// remove ends a session (logout).
func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	delete(ss.byID, id)
	ss.mu.Unlock()
}

// removeAccount ends every session of an account (removed by an admin).
func (ss *sessions) removeAccount(accountID int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, s := range ss.byID {
		if s.accountID == accountID {
			delete(ss.byID, id)
		}
	}
}

func (ss *sessions) sweepLocked(now time.Time) {
	for id, s := range ss.byID {
		s.mu.Lock()
		exp := ss.expired(s, now)
		s.mu.Unlock()
		if exp {
			delete(ss.byID, id)
		}
	}
}

func (ss *sessions) evictOldestLocked() {
	var oldest *session
	var oldestUse time.Time
	for _, s := range ss.byID {
		s.mu.Lock()
		if oldest == nil || s.lastUsed.Before(oldestUse) {
			oldest, oldestUse = s, s.lastUsed
		}
		s.mu.Unlock()
	}
	if oldest != nil {
		delete(ss.byID, oldest.id)
	}
}
