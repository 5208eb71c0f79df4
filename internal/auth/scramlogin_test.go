package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/testenv"
)

const alice = "alice@xn--bcher-kva.example"

// scramResult is what one SCRAM exchange against the Authenticator gave.
type scramResult struct {
	acct        store.Account // what done got
	err         error         // what Next returned last
	serverFirst string        // "" if the exchange ended before it
	calls       int           // calls of done
}

// scram runs a SCRAM-SHA-256 exchange for user with pw from ip, through
// NewSASLServer and Authenticator.SCRAM as a door does.
func (e *env) scram(t *testing.T, ip netip.Addr, user, pw string) scramResult {
	t.Helper()
	var r scramResult
	done := func(a store.Account, err error) error {
		r.calls++
		r.acct = a
		return err
	}
	s, err := auth.NewSASLServer("SCRAM-SHA-256", nil, e.a.SCRAM(t.Context(), ip, done))
	if err != nil {
		t.Fatal(err)
	}
	cl := &testenv.SCRAMClient{User: user, Password: pw}
	_, resp, _ := cl.Start()
	for range 4 {
		ch, fin, err := s.Next(resp)
		r.serverFirst = cl.ServerFirst
		if err != nil || fin {
			r.err = err
			if r.calls != 1 || (err == nil) != (r.acct.ID != 0) {
				t.Fatalf("done called %d times, account %+v, exchange error %v", r.calls, r.acct, err)
			}
			return r
		}
		if r.calls != 0 {
			t.Fatal("done called before the end of the exchange")
		}
		if resp, err = cl.Next(ch); err != nil {
			t.Fatalf("client: %v", err)
		}
	}
	t.Fatal("exchange does not end")
	return r
}

// TestSCRAMKeysAfterPasswordLogin: an account from before SCRAM (only a
// password hash) cannot use SCRAM until one password login gives it
// keys; then it can.
func TestSCRAMKeysAfterPasswordLogin(t *testing.T) {
	e := newEnv(t, auth.Config{})
	ctx := t.Context()
	if r := e.scram(t, ip1, alice, alicePW); !errors.Is(r.err, auth.ErrInvalidCredentials) {
		t.Fatalf("SCRAM without keys: %v", r.err)
	}
	if !strings.Contains(e.log.String(), `"reason":"no SCRAM keys yet"`) {
		t.Errorf("log does not say why:\n%s", e.log)
	}
	acct, err := e.a.Login(ctx, ip1, "Alice@Bücher.example", alicePW)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := e.st.GetAccount(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if stored.SCRAM == "" || acct.SCRAM != stored.SCRAM {
		t.Fatalf("after a password login: stored keys %q, Login returned %q", stored.SCRAM, acct.SCRAM)
	}
	k, err := accounts.ParseSCRAMKeys(stored.SCRAM)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := accounts.DeriveSCRAMKeys(alicePW, k.Salt, k.Iterations); string(again.StoredKey) != string(k.StoredKey) {
		t.Fatal("the keys added are not the password's")
	}
	r := e.scram(t, ip1, "ALICE@bücher.example", alicePW)
	if r.err != nil || r.acct.ID != acct.ID || r.acct.Address != alice {
		t.Fatalf("SCRAM after a password login: %+v", r)
	}
	// Further logins, cached or not, leave the keys alone.
	e.a.Login(ctx, ip1, alice, alicePW)
	e.advance(time.Hour)
	e.a.Login(ctx, ip1, alice, alicePW)
	if again, _ := e.st.GetAccount(ctx, alice); again.SCRAM != stored.SCRAM {
		t.Fatal("keys replaced at a later login")
	}
	// A new password replaces them, without keys (as SetPassword of an
	// older tool would): the old password no longer works over SCRAM.
	e.setPassword(t, "new password")
	if r := e.scram(t, ip1, alice, alicePW); !errors.Is(r.err, auth.ErrInvalidCredentials) {
		t.Fatalf("old password over SCRAM: %v", r.err)
	}
	if _, err := e.a.Login(ctx, ip1, alice, "new password"); err != nil {
		t.Fatal(err)
	}
	if r := e.scram(t, ip1, alice, "new password"); r.err != nil {
		t.Fatalf("new password over SCRAM: %v", r.err)
	}
}

// TestSCRAMNoEnumeration: a wrong password, an unknown user, an unusable
// username and an account without keys all look alike to the client,
// until the same error at the end.
func TestSCRAMNoEnumeration(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 100})
	ctx := t.Context()
	if _, err := e.a.Login(ctx, ip1, alice, alicePW); err != nil { // gives alice keys
		t.Fatal(err)
	}
	if _, err := e.st.AddAccount(ctx, store.Account{Address: "old@xn--bcher-kva.example", PasswordHash: cheapHash("pw")}); err != nil {
		t.Fatal(err)
	}
	shape := regexp.MustCompile(`^r=[^,]+,s=[A-Za-z0-9+/]{22}==,i=4096$`)
	salts := map[string]string{}
	for _, user := range []string{alice, "nobody@bücher.example", "old@bücher.example", "not an address", alice, "nobody@bücher.example"} {
		r := e.scram(t, ip2, user, "wrong")
		if !errors.Is(r.err, auth.ErrInvalidCredentials) || r.err.Error() != auth.ErrInvalidCredentials.Error() {
			t.Fatalf("%q: error %v, want exactly ErrInvalidCredentials", user, r.err)
		}
		if !shape.MatchString(r.serverFirst) {
			t.Fatalf("%q: server-first-message %q", user, r.serverFirst)
		}
		salt := r.serverFirst[strings.Index(r.serverFirst, ",s="):]
		if prev, ok := salts[user]; ok && prev != salt {
			t.Fatalf("%q: salt changed between attempts: %s, %s", user, prev, salt)
		}
		salts[user] = salt
	}
	if salts["nobody@bücher.example"] == salts["old@bücher.example"] || salts[alice] == salts["nobody@bücher.example"] {
		t.Fatalf("two users share a salt: %v", salts)
	}
	// Each failure was delayed like a password failure.
	if d := e.takeDelays(); len(d) != 6 || d[0] != 200*time.Millisecond {
		t.Fatalf("delays %v", d)
	}
}

// TestSCRAMThrottle: SCRAM failures and password failures count in the
// same tables, and a throttled client is refused before the
// server-first-message, even with the right password.
func TestSCRAMThrottle(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 3})
	ctx := t.Context()
	if _, err := e.a.Login(ctx, ip1, alice, alicePW); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := e.scram(t, ip1, alice, "wrong"); !errors.Is(r.err, auth.ErrInvalidCredentials) {
			t.Fatal(r.err)
		}
	}
	if _, err := e.a.Login(ctx, ip1, alice, "wrong"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	if got, want := e.takeDelays(), []time.Duration{200e6, 400e6, 800e6}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	for _, ip := range []netip.Addr{ip1, ip2} {
		r := e.scram(t, ip, alice, alicePW)
		if !errors.Is(r.err, auth.ErrThrottled) || r.serverFirst != "" {
			t.Fatalf("from %v after MaxFailures: %v, server-first %q", ip, r.err, r.serverFirst)
		}
	}
	if _, err := e.a.Login(ctx, ip2, alice, alicePW); !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("password login after SCRAM failures: %v", err)
	}
	if !strings.Contains(e.log.String(), `"msg":"login throttled"`) {
		t.Errorf("throttling not logged:\n%s", e.log)
	}
	e.advance(6 * time.Minute)
	if r := e.scram(t, ip1, alice, alicePW); r.err != nil {
		t.Fatalf("after the window: %v", r.err)
	}
}

// TestSCRAMBurst starts many exchanges, each past the first throttle
// check, then sends all their wrong proofs at once: no more than
// MaxFailures are counted as failures, the rest are throttled.
func TestSCRAMBurst(t *testing.T) {
	e := newEnv(t, auth.Config{MaxFailures: 3})
	ctx := t.Context()
	type pending struct {
		s     sasl.Server
		final []byte
	}
	var ps []pending
	for i := range 10 {
		s, _ := auth.NewSASLServer("SCRAM-SHA-256", nil, e.a.SCRAM(ctx, ip1, func(_ store.Account, err error) error { return err }))
		cl := &testenv.SCRAMClient{User: fmt.Sprintf("u%d@bücher.example", i), Password: "x"}
		_, ir, _ := cl.Start()
		ch, _, err := s.Next(ir)
		if err != nil {
			t.Fatal(err)
		}
		final, err := cl.Next(ch)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, pending{s, final})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	count := map[error]int{}
	for _, p := range ps {
		wg.Go(func() {
			_, _, err := p.s.Next(p.final)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, auth.ErrThrottled):
				count[auth.ErrThrottled]++
			case errors.Is(err, auth.ErrInvalidCredentials):
				count[auth.ErrInvalidCredentials]++
			default:
				t.Errorf("Next: %v", err)
			}
		})
	}
	wg.Wait()
	if count[auth.ErrInvalidCredentials] != 3 || count[auth.ErrThrottled] != 7 {
		t.Fatalf("%d failed, %d throttled; want 3 and 7", count[auth.ErrInvalidCredentials], count[auth.ErrThrottled])
	}
}

// TestSCRAMDoneOnlyAtEnd: the door learns of a success only once the
// client took the server-final-message, so a client that breaks off
// there is not logged in.
func TestSCRAMDoneOnlyAtEnd(t *testing.T) {
	e := newEnv(t, auth.Config{})
	ctx := t.Context()
	if _, err := e.a.Login(ctx, ip1, alice, alicePW); err != nil {
		t.Fatal(err)
	}
	var got []error
	s, _ := auth.NewSASLServer("SCRAM-SHA-256", nil, e.a.SCRAM(ctx, ip1, func(a store.Account, err error) error {
		got = append(got, err)
		return err
	}))
	cl := &testenv.SCRAMClient{User: alice, Password: alicePW}
	_, ir, _ := cl.Start()
	ch, _, _ := s.Next(ir)
	final, _ := cl.Next(ch)
	ch, done, err := s.Next(final)
	if err != nil || done || !strings.HasPrefix(string(ch), "v=") || len(got) != 0 {
		t.Fatalf("client-final: %q, %v, %v; done called %d times", ch, done, err, len(got))
	}
	if _, _, err := s.Next([]byte("more")); !errors.Is(err, auth.ErrMalformed) || len(got) != 0 {
		t.Fatalf("data instead of the empty response: %v; done got %v", err, got)
	}
	// A cancelled context fails the exchange through done.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	got = nil
	s, _ = auth.NewSASLServer("SCRAM-SHA-256", nil, e.a.SCRAM(cctx, ip1, func(a store.Account, err error) error {
		got = append(got, err)
		return err
	}))
	if _, _, err := s.Next(ir); !errors.Is(err, context.Canceled) || len(got) != 1 {
		t.Fatalf("cancelled: %v, done got %v", err, got)
	}
}
