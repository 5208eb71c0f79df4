package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
	"golang.org/x/crypto/argon2"
)

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

const alicePW = "correct horse battery staple"

// env is an Authenticator over a real store holding alice@bücher.example,
// with hooks that count verifications and record delays instead of
// sleeping.
type env struct {
	a        *auth.Authenticator
	m        *accounts.Manager
	st       store.Store
	log      *bytes.Buffer
	verified atomic.Int32

	mu     sync.Mutex
	delays []time.Duration
	now    time.Time
}

func newEnv(t *testing.T, cfg auth.Config) *env {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{m: accounts.NewManager(st), st: st, log: &bytes.Buffer{}, now: time.Unix(1_800_000_000, 0)}
	ctx := t.Context()
	if err := e.m.AddDomain(ctx, "bücher.example"); err != nil {
		t.Fatal(err)
	}
	// A cheap hash keeps tests fast (above all under -race); Login reads
	// the parameters from the stored string like any other.
	if _, err := st.AddAccount(ctx, store.Account{Address: "alice@xn--bcher-kva.example", PasswordHash: cheapHash(alicePW)}); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	h := slog.NewJSONHandler(lockedWriter{&logMu, e.log}, &slog.HandlerOptions{Level: slog.LevelDebug})
	e.a = auth.New(st, cfg, slog.New(h))
	e.a.SetNow(func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now })
	e.a.SetSleep(func(ctx context.Context, d time.Duration) {
		e.mu.Lock()
		e.delays = append(e.delays, d)
		e.mu.Unlock()
	})
	e.a.SetVerify(func(hash, pw string) bool {
		e.verified.Add(1)
		if hash == accounts.DummyHash() {
			// Skips the real cost, which only TestUnknownUserCostsAVerification
			// is about; nothing matches the dummy hash anyway.
			return false
		}
		return accounts.VerifyPassword(hash, pw)
	})
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// cheapHash is an argon2id PHC string with the smallest parameters and a
// random salt.
func cheapHash(pw string) string {
	salt := []byte(rand.Text())[:16]
	key := argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return "$argon2id$v=19$m=64,t=1,p=1$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(key)
}

// setPassword gives alice a new cheap hash of pw.
func (e *env) setPassword(t *testing.T, pw string) {
	t.Helper()
	acct, err := e.st.GetAccount(t.Context(), "alice@xn--bcher-kva.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetPassword(t.Context(), acct.ID, cheapHash(pw), ""); err != nil {
		t.Fatal(err)
	}
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

func (e *env) takeDelays() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.delays
	e.delays = nil
	return d
}

func TestLogin(t *testing.T) {
	e := newEnv(t, auth.Config{})
	ctx := t.Context()
	for _, u := range []string{"alice@xn--bcher-kva.example", "ALICE@Bücher.Example", "alice@bücher.example."} {
		acct, err := e.a.Login(ctx, ip1, u, alicePW)
		if err != nil || acct.Address != "alice@xn--bcher-kva.example" {
			t.Fatalf("Login(%q) = %+v, %v", u, acct, err)
		}
	}
	for _, c := range []struct{ user, pw string }{
		{"alice@bücher.example", "wrong"},
		{"alice@bücher.example", ""},
		{"alice@bücher.example", strings.ToUpper(alicePW)},
		{"bob@bücher.example", alicePW},       // unknown user
		{"alice@other.example", alicePW},      // unknown domain
		{"not an address", alicePW},           // unparsable
		{`"alice"@bücher.example`, alicePW},   // quoted: refused by NormalizeAddress
		{"alice+tag@bücher.example", alicePW}, // tags are for delivery, not login
	} {
		acct, err := e.a.Login(ctx, ip2, c.user, c.pw)
		if !errors.Is(err, auth.ErrInvalidCredentials) || acct.ID != 0 {
			t.Errorf("Login(%q, %q) = %+v, %v; want ErrInvalidCredentials", c.user, c.pw, acct, err)
		}
	}
}

// TestUnknownUserCostsAVerification checks that an unknown user's attempt
// runs one password verification like a known user's, against a hash
// with the same parameters, so both cost the same. (Wall-clock times are
// only logged: on a loaded machine they are too noisy to assert on.)
func TestUnknownUserCostsAVerification(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 100})
	ctx := t.Context()
	var verified []string
	e.a.SetVerify(func(hash, pw string) bool {
		verified = append(verified, hash)
		return accounts.VerifyPassword(hash, pw)
	})
	// The real cost, which DummyHash has too.
	if err := e.m.SetPassword(ctx, "alice@bücher.example", alicePW); err != nil {
		t.Fatal(err)
	}
	params := func(hash string) string { return strings.Join(strings.Split(hash, "$")[:4], "$") }
	var real string
	for _, user := range []string{"alice@bücher.example", "nobody@bücher.example", "not an address"} {
		verified = nil
		start := time.Now()
		if _, err := e.a.Login(ctx, ip1, user, "wrong"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("Login(%q): %v", user, err)
		}
		t.Logf("%q answered in %v", user, time.Since(start))
		if len(verified) != 1 {
			t.Fatalf("Login(%q) ran %d verifications, want 1", user, len(verified))
		}
		if real == "" {
			real = params(verified[0])
			continue
		}
		if got := params(verified[0]); got != real {
			t.Fatalf("Login(%q) verified against %q, the known user against %q", user, got, real)
		}
	}
}

func TestThrottleDelays(t *testing.T) {
	e := newEnv(t, auth.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 35 * time.Millisecond, MaxFailures: 4, FailureWindow: time.Minute})
	ctx := t.Context()
	for range 4 {
		if _, err := e.a.Login(ctx, ip1, "alice@bücher.example", "wrong"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure: %v", err)
		}
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 35 * time.Millisecond, 35 * time.Millisecond}
	if got := e.takeDelays(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	// Past MaxFailures: throttled at once, without verifying or sleeping,
	// even with the right password, from this IP or any other.
	before := e.verified.Load()
	for _, ip := range []netip.Addr{ip1, ip2} {
		if _, err := e.a.Login(ctx, ip, "alice@bücher.example", alicePW); !errors.Is(err, auth.ErrThrottled) {
			t.Fatalf("from %v after MaxFailures: %v, want ErrThrottled", ip, err)
		}
	}
	if e.verified.Load() != before || len(e.takeDelays()) != 0 {
		t.Fatal("throttled attempt verified a password or slept")
	}
	// The window runs from the last failure.
	e.advance(59 * time.Second)
	if _, err := e.a.Login(ctx, ip2, "alice@bücher.example", alicePW); !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("inside the window: %v, want ErrThrottled", err)
	}
	e.advance(2 * time.Second)
	if _, err := e.a.Login(ctx, ip1, "alice@bücher.example", alicePW); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// Counts start again after the window.
	e.a.Login(ctx, ip2, "alice@bücher.example", "wrong")
	if got := e.takeDelays(); len(got) != 1 || got[0] != 10*time.Millisecond {
		t.Fatalf("first delay after the window %v, want [10ms]", got)
	}
}

func TestThrottlePerIP(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 3})
	ctx := t.Context()
	// Different usernames, one IPv6 /64.
	for i, ip := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"} {
		_, err := e.a.Login(ctx, netip.MustParseAddr(ip), fmt.Sprintf("u%d@bücher.example", i), "x")
		if !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	if _, err := e.a.Login(ctx, netip.MustParseAddr("2001:db8::ffff"), "alice@bücher.example", alicePW); !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("same /64 after MaxFailures: %v, want ErrThrottled", err)
	}
	if _, err := e.a.Login(ctx, netip.MustParseAddr("2001:db8:0:1::1"), "alice@bücher.example", alicePW); err != nil {
		t.Fatalf("other /64: %v", err)
	}
}

func TestSuccessClearsIP(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 3})
	ctx := t.Context()
	fail := func(user string) {
		t.Helper()
		if _, err := e.a.Login(ctx, ip1, user, "x"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("Login(%s): %v", user, err)
		}
	}
	fail("u1@bücher.example")
	fail("u2@bücher.example")
	if _, err := e.a.Login(ctx, ip1, "alice@bücher.example", alicePW); err != nil {
		t.Fatal(err)
	}
	fail("u3@bücher.example")
	fail("u4@bücher.example")
	// Four failures from ip1 in all, but only two since the success.
	if _, err := e.a.Login(ctx, ip1, "alice@bücher.example", alicePW); err != nil {
		t.Fatalf("after success and two failures: %v", err)
	}
	if got := e.takeDelays(); fmt.Sprint(got) != fmt.Sprint([]time.Duration{200e6, 400e6, 200e6, 400e6}) {
		t.Fatalf("delays %v: the success did not reset the count", got)
	}
}

// TestThrottleBurst sends many wrong passwords at once: no more are
// verified than MaxFailures (with one verification at a time).
func TestThrottleBurst(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 3, MaxVerify: 1})
	ctx := t.Context()
	var wg sync.WaitGroup
	var throttled atomic.Int32
	for i := range 12 {
		wg.Go(func() {
			_, err := e.a.Login(ctx, ip1, fmt.Sprintf("u%d@bücher.example", i), "x")
			switch {
			case errors.Is(err, auth.ErrThrottled):
				throttled.Add(1)
			case !errors.Is(err, auth.ErrInvalidCredentials):
				t.Errorf("Login: %v", err)
			}
		})
	}
	wg.Wait()
	if v := e.verified.Load(); v != 3 || throttled.Load() != 9 {
		t.Fatalf("%d verified, %d throttled; want 3 and 9", v, throttled.Load())
	}
}

func TestDelayRespectsContext(t *testing.T) {
	e := newEnv(t, auth.Config{BaseDelay: time.Hour, MaxDelay: time.Hour})
	e.a.SetSleep(auth.Sleep) // the real one
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.a.Login(ctx, ip1, "alice@bücher.example", "wrong")
	if !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("Login: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Login took %v: the delay ignored ctx", d)
	}
	if _, err := e.a.Login(ctx, ip1, "alice@bücher.example", alicePW); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Login with a done ctx: %v", err)
	}
}

func TestRealDelay(t *testing.T) {
	e := newEnv(t, auth.Config{BaseDelay: 150 * time.Millisecond})
	e.a.SetSleep(auth.Sleep)
	e.a.SetVerify(func(string, string) bool { return false }) // time only the delay
	start := time.Now()
	e.a.Login(t.Context(), ip1, "alice@bücher.example", "wrong")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("failed login returned after %v, before BaseDelay", d)
	}
}

func TestCache(t *testing.T) {
	e := newEnv(t, auth.Config{CacheTTL: time.Minute})
	ctx := t.Context()
	login := func(pw string) error {
		_, err := e.a.Login(ctx, ip1, "alice@bücher.example", pw)
		return err
	}
	if err := login(alicePW); err != nil || e.verified.Load() != 1 {
		t.Fatalf("first login: %v, %d verifications", err, e.verified.Load())
	}
	start := time.Now()
	if err := login(alicePW); err != nil {
		t.Fatal(err)
	}
	if e.verified.Load() != 1 {
		t.Fatal("repeat login verified again instead of using the cache")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Logf("cached login took %v", d) // informative only: the store read varies
	}
	// A wrong password is never answered from the cache.
	if err := login(alicePW + "x"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("wrong password after a cached success: %v", err)
	}
	// Past CacheTTL, verified again.
	e.advance(61 * time.Second)
	if err := login(alicePW); err != nil || e.verified.Load() != 3 {
		t.Fatalf("after TTL: %v, %d verifications, want 3", err, e.verified.Load())
	}
	// A new password changes the stored hash: the old one is refused at
	// once, although it is cached.
	e.setPassword(t, "new password")
	if err := login(alicePW); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("old password after SetPassword: %v", err)
	}
	if err := login("new password"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	// Even setting the same password again gives a new salt, so a new
	// hash and a cache miss.
	e.setPassword(t, "new password")
	before := e.verified.Load()
	if err := login("new password"); err != nil || e.verified.Load() != before+1 {
		t.Fatalf("after re-setting the password: %v, cache used: %v", err, e.verified.Load() == before)
	}
}

func TestRemovedAccount(t *testing.T) {
	e := newEnv(t, auth.Config{})
	ctx := t.Context()
	if _, err := e.a.Login(ctx, ip1, "alice@bücher.example", alicePW); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveUser(ctx, "alice@bücher.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.Login(ctx, ip1, "alice@bücher.example", alicePW); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("login to a removed account: %v", err)
	}
}

func TestMemoryBounded(t *testing.T) {
	e := newEnv(t, auth.Config{MaxTracked: 5, MaxFailures: 1000})
	e.a.SetVerify(func(string, string) bool { return false })
	ctx := t.Context()
	for i := range 20 {
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		e.a.Login(ctx, ip, fmt.Sprintf("u%d@bücher.example", i), "x")
		e.advance(time.Second)
	}
	if _, ips, users := e.a.Tracked(); ips > 5 || users > 5 {
		t.Fatalf("tracking %d IPs and %d users, bound 5", ips, users)
	}
	// The newest failure is still counted.
	e.a.Login(ctx, netip.AddrFrom4([4]byte{198, 51, 100, 19}), "x@bücher.example", "x")
	if d := e.takeDelays(); d[len(d)-1] != 400*time.Millisecond {
		t.Fatalf("last delay %v, want 400ms for a second failure", d[len(d)-1])
	}
}

func TestLogs(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 2})
	ctx := t.Context()
	const secret = "hunter2-secret"
	e.a.Login(ctx, ip1, "alice@bücher.example", secret)
	e.a.Login(ctx, ip1, "nobody@bücher.example", secret)
	e.a.Login(ctx, ip1, "alice@bücher.example", secret)
	out := e.log.String()
	if strings.Contains(out, secret) {
		t.Fatalf("password logged: %s", out)
	}
	for _, want := range []string{`"level":"INFO"`, `"msg":"login failed"`, `"ip":"192.0.2.1"`,
		`"username":"alice@bücher.example"`, `"reason":"unknown user"`, `"msg":"login throttled"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
