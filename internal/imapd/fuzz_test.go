package imapd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// panicRecorder is a slog handler remembering panics the session
// boundary recovered.
type panicRecorder struct {
	mu     sync.Mutex
	panics []string
}

func (h *panicRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicRecorder) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { b.WriteString(a.String() + "\n"); return true })
		h.mu.Lock()
		h.panics = append(h.panics, b.String())
		h.mu.Unlock()
	}
	return nil
}
func (h *panicRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicRecorder) WithGroup(string) slog.Handler      { return h }

func (h *panicRecorder) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.panics
	h.panics = nil
	return p
}

// FuzzServer runs whole command sequences through a session over a real
// store. The first byte chooses whether the session starts logged in and
// with a mailbox selected.
func FuzzServer(f *testing.F) {
	for _, s := range []string{
		"\x00a CAPABILITY\r\nb NOOP\r\n",
		"\x01a LOGIN alice@example.test {28}\r\ncorrect horse battery staple\r\nb SELECT INBOX\r\n",
		"\x02a FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[1.MIME] BODY[HEADER.FIELDS (SUBJECT)]<0.10>)\r\n",
		"\x02a UID SEARCH RETURN (MIN MAX COUNT SAVE) OR SEEN (NOT FROM \"bob\") BODY needle\r\nb FETCH $ FLAGS\r\n",
		"\x02a STORE 1 +FLAGS.SILENT (\\Deleted)\r\nb EXPUNGE\r\nc UID EXPUNGE 1:*\r\n",
		"\x02a APPEND INBOX (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {14+}\r\nSubject: x\r\n\r\n\r\nb IDLE\r\nDONE\r\n",
		"\x02a APPEND INBOX (\\Seen) {14+}\r\nSubject: x\r\n\r\n (\\Flagged) \"01-Jan-2024 10:00:00 +0000\" UTF8 (~{3+}\r\nabc)\r\nb APPEND INBOX {1+}\r\nx {9}\r\n",
		"\x02a COPY 1:* Archive\r\nb UID MOVE 1:* Trash\r\nc LIST \"\" *\r\nd LSUB \"\" %\r\n",
		"\x02a ENABLE QRESYNC IMAP4rev2\r\nb SELECT INBOX (QRESYNC (1 1 1:5))\r\nc UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
		"\x02a CREATE foo/bar (USE (\\Junk))\r\nb RENAME foo baz\r\nc STATUS baz/bar (MESSAGES SIZE HIGHESTMODSEQ)\r\nd DELETE baz/bar\r\n",
		"\x02a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% *) RETURN (CHILDREN STATUS (UNSEEN))\r\n",
		"\x02a FETCH 2 (BINARY[2] BINARY.SIZE[2] RFC822.HEADER)\r\nb STORE 1 (UNCHANGEDSINCE 3) FLAGS ($x)\r\n",
		"\x00a AUTHENTICATE PLAIN\r\nAGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl\r\nb ID (\"name\" \"fuzz\")\r\n",
	} {
		f.Add([]byte(s))
	}
	fz := newFuzzEnv(f)
	f.Fuzz(fz.run)
}

type fuzzEnv struct {
	e   *env
	rec *panicRecorder
}

func newFuzzEnv(t testing.TB) *fuzzEnv {
	rec := &panicRecorder{}
	// Everything logs to the recorder: the fuzzing engine forbids logging
	// through the testing.F from inside the fuzz target.
	e := newEnv(t, envOpts{plain: true, log: slog.New(rec), cfg: Config{IdleTimeout: 300 * time.Millisecond, MaxLiteralBytes: 1 << 20}})
	e.put("INBOX", testMsg)
	e.put("INBOX", multipartMsg)
	return &fuzzEnv{e: e, rec: rec}
}

// run is one fuzz iteration.
func (fz *fuzzEnv) run(t *testing.T, data []byte) {
	e, rec := fz.e, fz.rec
	if len(data) == 0 {
		return
	}
	mode := data[0] % 3
	srvSide, cliSide := net.Pipe()
	c := newConn(e.srv, srvSide, netip.Addr{})
	if mode >= 1 {
		c.loggedIn(e.acct)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if mode == 2 {
			// Start with INBOX selected (its replies precede the greeting).
			p := newParser(c, []byte(" INBOX"))
			c.cmd = "SELECT"
			c.cmdSelect("s", p)
		}
		c.serve(false)
	}()
	go func() {
		cliSide.SetWriteDeadline(time.Now().Add(2 * time.Second))
		cliSide.Write(data[1:])
		cliSide.Write([]byte("\r\nzz LOGOUT\r\n"))
	}()
	cliSide.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, cliSide)
	cliSide.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
	if p := rec.take(); len(p) > 0 {
		t.Fatalf("session panicked:\n%s", p[0])
	}
}
