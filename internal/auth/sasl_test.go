package auth_test

import (
	"errors"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/testenv"
)

var errBad = errors.New("bad password")

// checker accepts alice@example.org with password "pw" and records what
// it was asked.
type checker struct{ user, pw string }

func (c *checker) login(user, pw string) error {
	c.user, c.pw = user, pw
	if user == "alice@example.org" && pw == "pw" {
		return nil
	}
	return errBad
}

type step struct {
	resp      []byte // nil: no (initial) response
	challenge string
	done      bool
	err       error
}

func run(t *testing.T, mech string, steps []step) *checker {
	t.Helper()
	c := &checker{}
	s, err := auth.NewSASLServer(mech, c.login, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range steps {
		ch, done, err := s.Next(st.resp)
		if string(ch) != st.challenge || done != st.done || !errors.Is(err, st.err) {
			t.Fatalf("%s step %d: Next(%q) = %q, %v, %v; want %q, %v, %v",
				mech, i, st.resp, ch, done, err, st.challenge, st.done, st.err)
		}
	}
	return c
}

func TestSASLPlain(t *testing.T) {
	ok := []byte("\x00alice@example.org\x00pw")
	run(t, "PLAIN", []step{{resp: ok, done: true}})
	run(t, "plain", []step{{resp: nil, challenge: ""}, {resp: ok, done: true}})
	run(t, "PLAIN", []step{{resp: []byte("alice@example.org\x00alice@example.org\x00pw"), done: true}})
	// The authorization identity may be the same address spelled otherwise.
	run(t, "PLAIN", []step{{resp: []byte("Alice@Example.ORG\x00alice@example.org\x00pw"), done: true}})
	// Proxy authorization is refused before the password is checked.
	c := run(t, "PLAIN", []step{{resp: []byte("bob@example.org\x00alice@example.org\x00pw"), done: true, err: auth.ErrAuthzid}})
	if c.user != "" {
		t.Error("login called for a foreign authorization identity")
	}
	if !errors.Is(auth.ErrAuthzid, auth.ErrInvalidCredentials) {
		t.Error("ErrAuthzid does not wrap ErrInvalidCredentials")
	}
	run(t, "PLAIN", []step{{resp: []byte("\x00alice@example.org\x00wrong"), done: true, err: errBad}})
	// Passwords may contain anything but NUL.
	c = run(t, "PLAIN", []step{{resp: []byte("\x00alice@example.org\x00p w\xc3\xa9"), done: true, err: errBad}})
	if c.pw != "p w\u00e9" {
		t.Errorf("password passed as %q", c.pw)
	}
	s, _ := auth.NewSASLServer("PLAIN", (&checker{}).login, nil)
	if _, _, err := s.Next([]byte("alice@example.org\x00pw")); err == nil {
		t.Error("two-field PLAIN response accepted")
	}
	if _, _, err := s.Next(ok); err == nil {
		t.Error("response after the end accepted")
	}
}

func TestSASLLogin(t *testing.T) {
	c := run(t, "LOGIN", []step{
		{resp: nil, challenge: "Username:"},
		{resp: []byte("alice@example.org"), challenge: "Password:"},
		{resp: []byte("pw"), done: true},
	})
	if c.user != "alice@example.org" || c.pw != "pw" {
		t.Fatalf("login got %q, %q", c.user, c.pw)
	}
	// Initial response carries the username (AUTH LOGIN <base64 user>).
	run(t, "login", []step{
		{resp: []byte("alice@example.org"), challenge: "Password:"},
		{resp: []byte("wrong"), done: true, err: errBad},
	})
	// Empty answers are passed on as empty strings.
	c = run(t, "Login", []step{
		{resp: nil, challenge: "Username:"},
		{resp: []byte{}, challenge: "Password:"},
		{resp: []byte{}, done: true, err: errBad},
	})
	if c.user != "" || c.pw != "" {
		t.Fatalf("login got %q, %q", c.user, c.pw)
	}
	s, _ := auth.NewSASLServer("LOGIN", (&checker{}).login, nil)
	s.Next(nil)
	s.Next([]byte("alice@example.org"))
	s.Next([]byte("pw"))
	if _, done, err := s.Next([]byte("again")); err == nil || !done {
		t.Fatalf("response after the end: done %v, err %v", done, err)
	}
}

// TestSASLClients runs go-sasl's own clients, and the test SCRAM client,
// against the servers.
func TestSASLClients(t *testing.T) {
	for _, cl := range []sasl.Client{
		sasl.NewPlainClient("", "alice@example.org", "pw"),
		sasl.NewLoginClient("alice@example.org", "pw"),
		&testenv.SCRAMClient{User: "alice@example.org", Password: "pw"},
		&testenv.SCRAMClient{User: "alice@example.org", Password: "pw", Authzid: "Alice@Example.org"},
	} {
		mech, ir, err := cl.Start()
		if err != nil {
			t.Fatal(err)
		}
		s, err := auth.NewSASLServer(mech, (&checker{}).login, newKeyLogin(t))
		if err != nil {
			t.Fatal(err)
		}
		resp := ir
		for i := 0; ; i++ {
			ch, done, err := s.Next(resp)
			if err != nil {
				t.Fatalf("%s: %v", mech, err)
			}
			if done {
				break
			}
			if i > 3 {
				t.Fatalf("%s: exchange does not end", mech)
			}
			if resp, err = cl.Next(ch); err != nil {
				t.Fatalf("%s client: %v", mech, err)
			}
		}
	}
}

func TestSASLMechanisms(t *testing.T) {
	if auth.Mechanisms[0] != "SCRAM-SHA-256" {
		t.Errorf("mechanisms %v: SCRAM-SHA-256 is not offered first", auth.Mechanisms)
	}
	for _, m := range auth.Mechanisms {
		if _, err := auth.NewSASLServer(m, (&checker{}).login, newKeyLogin(t)); err != nil {
			t.Errorf("advertised %s: %v", m, err)
		}
	}
	for _, m := range []string{"CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "", "XOAUTH2"} {
		if _, err := auth.NewSASLServer(m, (&checker{}).login, newKeyLogin(t)); err == nil {
			t.Errorf("NewSASLServer(%q) succeeded", m)
		}
	}
	// Without the account side, SCRAM is not available.
	if _, err := auth.NewSASLServer("scram-sha-256", (&checker{}).login, nil); err == nil {
		t.Error("SCRAM-SHA-256 without a SCRAMLogin succeeded")
	}
}

// FuzzSASL feeds arbitrary responses to every mechanism: no panic, and
// login is called only with what the client sent. FuzzSCRAM goes deeper
// into SCRAM-SHA-256.
func FuzzSASL(f *testing.F) {
	f.Add("PLAIN", []byte("\x00alice@example.org\x00pw"), []byte(nil))
	f.Add("LOGIN", []byte("alice@example.org"), []byte("pw"))
	f.Add("LOGIN", []byte(nil), []byte("alice@example.org"))
	f.Add("SCRAM-SHA-256", []byte("n,,n=user,r=abc"), []byte("c=biws,r=abc,p=AAAA"))
	f.Fuzz(func(t *testing.T, mech string, r1, r2 []byte) {
		s, err := auth.NewSASLServer(mech, (&checker{}).login, newKeyLogin(t))
		if err != nil {
			return
		}
		for _, r := range [][]byte{r1, r2, r1} {
			if _, done, err := s.Next(r); done || err != nil {
				return
			}
		}
	})
}
