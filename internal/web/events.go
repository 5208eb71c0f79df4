package web

import (
	"encoding/json"
	"net/http"
	"time"
)

// keepAlive is how often an idle event stream sends a comment, so that
// proxies and the browser keep it open.
const keepAlive = 25 * time.Second

// events is a Server-Sent Events stream fed by the account's change feed:
// each change sends the mailbox counts, and the script refreshes what it
// shows. The browser reconnects by itself after an error.
func (s *Server) events(w http.ResponseWriter, r *http.Request, u *userCtx) {
	rc := http.NewResponseController(w)
	// The stream outlives the server's read timeout, which would end it.
	rc.SetReadDeadline(time.Time{})
	ch, cancel := s.st.Subscribe(u.acct.ID)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func() bool {
		// The stream lives longer than the server's write timeout.
		rc.SetWriteDeadline(time.Now().Add(time.Minute))
		mbs, err := s.mailboxViews(r.Context(), u.acct.ID)
		if err != nil {
			return r.Context().Err() == nil
		}
		b, _ := json.Marshal(mbs)
		if _, err := w.Write([]byte("event: counts\ndata: " + string(b) + "\n\n")); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send() {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			if !send() {
				return
			}
		case <-tick.C:
			rc.SetWriteDeadline(time.Now().Add(time.Minute))
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}
