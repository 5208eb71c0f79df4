package web

import (
	"net/http"
	"net/mail"
)

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// len reports the number of sessions held.
func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byID)
}

func mustAddr(s string) *mail.Address {
	a, err := mail.ParseAddress(s)
	if err != nil {
		panic(err)
	}
	return a
}
