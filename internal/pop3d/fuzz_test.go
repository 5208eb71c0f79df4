package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
)

// memStore is the part of store.Store a POP3 session uses, in memory, so
// the fuzzer runs the command loop without disk or password hashing.
// Methods a session must not call panic through the nil embedded Store.
type memStore struct {
	store.Store
	mu       sync.Mutex
	bodies   map[uint32]string
	expunged []uint32
	locks    map[string]bool
	failLock bool // Lock fails as a broken store would
}

const (
	memUIDValidity = 7
	memMailbox     = 42
	memAccount     = 3
)

func newMemStore(bodies ...string) *memStore {
	m := &memStore{bodies: map[uint32]string{}, locks: map[string]bool{}}
	for i, b := range bodies {
		m.bodies[uint32(i*2+1)] = b // UIDs with gaps
	}
	return m
}

func (m *memStore) GetMailbox(_ context.Context, accountID int64, name string) (store.Mailbox, error) {
	if accountID != memAccount || name != "INBOX" {
		return store.Mailbox{}, store.ErrNoSuchMailbox
	}
	return store.Mailbox{ID: memMailbox, AccountID: memAccount, Name: "INBOX", UIDValidity: memUIDValidity}, nil
}

func (m *memStore) ListMessages(_ context.Context, mailboxID int64) ([]store.MessageMeta, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ms []store.MessageMeta
	for uid := range m.bodies {
		ms = append(ms, store.MessageMeta{UID: uid})
	}
	slices.SortFunc(ms, func(a, b store.MessageMeta) int { return int(a.UID) - int(b.UID) })
	return ms, nil
}

func (m *memStore) GetMessages(_ context.Context, mailboxID int64, uids []uint32) ([]store.Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ms []store.Message
	for _, uid := range uids {
		if b, ok := m.bodies[uid]; ok {
			ms = append(ms, store.Message{MessageMeta: store.MessageMeta{UID: uid}, MailboxID: mailboxID, Size: int64(len(b)), BlobID: fmt.Sprint(uid)})
		}
	}
	return ms, nil
}

func (m *memStore) OpenBlob(_ context.Context, id string) (store.BlobReader, error) {
	var uid uint32
	fmt.Sscan(id, &uid)
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bodies[uid]
	if !ok {
		return nil, store.ErrNotFound
	}
	return memBlob{strings.NewReader(b)}, nil
}

type memBlob struct{ *strings.Reader }

func (memBlob) Close() error { return nil }

func (m *memStore) Expunge(_ context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var done []uint32
	for _, uid := range uids {
		if _, ok := m.bodies[uid]; ok {
			delete(m.bodies, uid)
			done = append(done, uid)
		}
	}
	m.expunged = append(m.expunged, done...)
	return done, nil
}

func (m *memStore) Lock(_ context.Context, name string) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failLock {
		return nil, errors.New("disk on fire")
	}
	if m.locks[name] {
		return nil, store.ErrInUse
	}
	m.locks[name] = true
	return func() { m.mu.Lock(); delete(m.locks, name); m.mu.Unlock() }, nil
}

// memLogin accepts u/p; "throttled" is throttled, anything else invalid.
func memLogin(_ context.Context, _ netip.Addr, user, pass string) (store.Account, error) {
	switch {
	case user == "u" && pass == "p":
		return store.Account{ID: memAccount, Address: "u@example.test"}, nil
	case user == "throttled":
		return store.Account{}, auth.ErrThrottled
	}
	return store.Account{}, auth.ErrInvalidCredentials
}

// memSCRAM is memLogin for SCRAM-SHA-256: u's keys are those of "p",
// other users get keys no proof matches, "throttled" is throttled.
func memSCRAM(_ context.Context, _ netip.Addr, done func(store.Account, error) error) auth.SCRAMLogin {
	return &memSCRAMLogin{done: done}
}

type memSCRAMLogin struct {
	done func(store.Account, error) error
	user string
	ok   bool
}

// memKeys are u's keys, derived once.
var memKeys = sync.OnceValue(func() accounts.SCRAMKeys {
	k, err := accounts.DeriveSCRAMKeys("p", []byte("0123456789abcdef"), accounts.SCRAMIterations)
	if err != nil {
		panic(err)
	}
	return k
})

func (l *memSCRAMLogin) Keys(user string) (accounts.SCRAMKeys, error) {
	l.user = user
	if user == "throttled" {
		return accounts.SCRAMKeys{}, l.fail(auth.ErrThrottled)
	}
	k := memKeys()
	if user != "u" {
		k.StoredKey = make([]byte, len(k.StoredKey))
	}
	return k, nil
}

func (l *memSCRAMLogin) Verify(ok bool) error {
	if !ok || l.user != "u" {
		return l.fail(auth.ErrInvalidCredentials)
	}
	l.ok = true
	return nil
}

func (l *memSCRAMLogin) Done() error {
	if !l.ok {
		return l.fail(auth.ErrInvalidCredentials)
	}
	return l.done(store.Account{ID: memAccount, Address: "u@example.test"}, nil)
}

func (l *memSCRAMLogin) fail(err error) error {
	if e := l.done(store.Account{}, err); e != nil {
		return e
	}
	return err
}

// scriptConn is a net.Conn that reads a fixed script and records what is
// written.
type scriptConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// panicHandler fails the fuzz target on a recovered session panic, which
// the session would otherwise only log.
type panicHandler struct{ t testing.TB }

func (h panicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h panicHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { b.WriteString(a.String() + "\n"); return true })
		h.t.Fatalf("%s\n%s", r.Message, b.String())
	}
	return nil
}
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicHandler) WithGroup(string) slog.Handler      { return h }

// runScript runs one session over script against st and returns what the
// server wrote.
func runScript(t testing.TB, st store.Store, script []byte) []byte {
	s, err := newServer(Config{Hostname: "pop.example.test", AllowPlaintextAuth: true}, st, slog.New(panicHandler{t}), memLogin, memSCRAM)
	if err != nil {
		t.Fatal(err)
	}
	c := &scriptConn{r: bytes.NewReader(script)}
	s.wg.Add(1)
	s.handle(c, false)
	return c.w.Bytes()
}

var fuzzBodies = []string{
	"Subject: a\r\n\r\nhello\r\n.dot\r\n",
	"no header, no CRLF",
	"",
	"Subject: b\r\n\r\n.\r\n..\r\n",
}

// FuzzSession runs the whole command loop over arbitrary input. Beyond not
// panicking (the session recovers and logs; the handler turns that into a
// failure), it checks that nothing is deleted without a QUIT, that the
// maildrop lock is always released, and that every reply line ends with
// CRLF and the greeting comes first. Seeds are in testdata/fuzz.
func FuzzSession(f *testing.F) {
	f.Fuzz(func(t *testing.T, script []byte) {
		st := newMemStore(fuzzBodies...)
		out := runScript(t, st, script)
		if !bytes.Contains(bytes.ToUpper(script), []byte("QUIT")) && len(st.expunged) > 0 {
			t.Fatalf("expunged %v without QUIT", st.expunged)
		}
		if len(st.locks) > 0 {
			t.Fatalf("locks %v still held after the session", st.locks)
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("output does not end with CRLF: %q", out)
		}
		if !bytes.HasPrefix(out, []byte("+OK ")) {
			t.Fatalf("no greeting: %q", out)
		}
	})
}

func TestDotWriter(t *testing.T) {
	for _, tc := range []struct {
		in    string
		lines int64
		want  string
	}{
		{"", -1, ".\r\n"},
		{"a", -1, "a\r\n.\r\n"},
		{"a\r\n", -1, "a\r\n.\r\n"},
		{".\r\n", -1, "..\r\n.\r\n"},
		{"a\r\n.b\r\n..c\r\nd.e\r\n", -1, "a\r\n..b\r\n...c\r\nd.e\r\n.\r\n"},
		{"a\n.b", -1, "a\n..b\r\n.\r\n"},
		{"H: 1\r\n\r\nb1\r\nb2\r\n", 0, "H: 1\r\n\r\n.\r\n"},
		{"H: 1\r\n\r\nb1\r\nb2\r\n", 1, "H: 1\r\n\r\nb1\r\n.\r\n"},
		{"H: 1\r\n\r\nb1\r\nb2", 5, "H: 1\r\n\r\nb1\r\nb2\r\n.\r\n"},
		{"H: 1\n\n.b1\nb2\n", 1, "H: 1\n\n..b1\n.\r\n"},
		{"\r\nbody\r\n", 0, "\r\n.\r\n"},
		{"H: 1\r\nno body", 0, "H: 1\r\nno body\r\n.\r\n"},
	} {
		// Every split of the input into two writes gives the same output.
		for cut := 0; cut <= len(tc.in); cut++ {
			var b bytes.Buffer
			w := bufio.NewWriter(&b)
			d := dotWriter{w: w, bol: true, lines: tc.lines}
			d.write([]byte(tc.in[:cut]))
			if !d.done {
				d.write([]byte(tc.in[cut:]))
			}
			d.end()
			w.Flush()
			if b.String() != tc.want {
				t.Errorf("%q lines %d cut %d: got %q, want %q", tc.in, tc.lines, cut, b.String(), tc.want)
				break
			}
		}
	}
}

func TestMemSession(t *testing.T) {
	st := newMemStore(fuzzBodies...)
	out := string(runScript(t, st, []byte("USER u\r\nPASS p\r\nSTAT\r\nUIDL 2\r\nDELE 1\r\nQUIT\r\n")))
	for _, want := range []string{"+OK maildrop has 4 messages", "+OK 2 7.3\r\n", "+OK message 1 deleted"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if !slices.Equal(st.expunged, []uint32{1}) {
		t.Errorf("expunged %v, want [1]", st.expunged)
	}

	// RFC 3206 codes: a throttled login is temporary, a store failure
	// too; neither asks the user for another password.
	out = string(runScript(t, st, []byte("USER throttled\r\nPASS x\r\n")))
	if !strings.Contains(out, "-ERR [SYS/TEMP] too many failed logins") {
		t.Errorf("throttled login: %q", out)
	}
	st.failLock = true
	out = string(runScript(t, st, []byte("USER u\r\nPASS p\r\n")))
	if !strings.Contains(out, "-ERR [SYS/TEMP] cannot open maildrop") {
		t.Errorf("lock failure: %q", out)
	}
}
