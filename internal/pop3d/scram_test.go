package pop3d

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/testenv"
)

func std64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// dialTLS connects to the implicit-TLS listener (995) and reads the
// greeting.
func (e *env) dialTLS() *client {
	e.t.Helper()
	tc, err := tls.Dial("tcp", e.tls, e.clientTLS())
	if err != nil {
		e.t.Fatal(err)
	}
	c := newClient(e.t, tc)
	c.Expect("+OK ")
	return c
}

// scramTo sends AUTH SCRAM-SHA-256 with cl's initial response, answers
// the server-first-message and returns the line after: a continuation
// with the server-final-message if the proof matched, or the error.
func (c *client) scramTo(cl *testenv.SCRAMClient) string {
	c.T.Helper()
	_, ir, _ := cl.Start()
	sf, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(c.cmd("AUTH SCRAM-SHA-256 "+std64(string(ir)), "+ "), "+ "))
	if err != nil {
		c.T.Fatal(err)
	}
	final, err := cl.Next(sf)
	if err != nil {
		c.T.Fatal(err)
	}
	c.Send(std64(string(final)))
	return c.ReadLine()
}

func TestAuthSCRAM(t *testing.T) {
	e := newEnv(t, Config{}, true)
	e.put(msg1)
	c := e.dialTLS()
	c.Send("CAPA")
	c.Expect("+OK")
	if capa := c.multi(); !slices.Contains(capa, "SASL SCRAM-SHA-256 PLAIN LOGIN") {
		t.Fatalf("CAPA %q", capa)
	}
	cl := &testenv.SCRAMClient{User: "ALICE@example.test", Password: testPass}
	sfin := c.scramTo(cl)
	v, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sfin, "+ "))
	if _, err := cl.Next(v); err != nil {
		t.Fatalf("server-final-message %q: %v", sfin, err)
	}
	c.cmd("", "+OK maildrop has 1 messages")
	c.cmd("RETR 1", "+OK")
	if got := string(c.body()); got != msg1 {
		t.Errorf("RETR after SCRAM = %q", got)
	}
	c.cmd("QUIT", "+OK")

	// Without an initial response, and "=" for the empty last response.
	c = e.dialTLS()
	cl = &testenv.SCRAMClient{User: testUser, Password: testPass}
	_, first, _ := cl.Start()
	c.cmd("AUTH SCRAM-SHA-256", "+ ")
	sf, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(c.cmd(std64(string(first)), "+ "), "+ "))
	final, _ := cl.Next(sf)
	c.cmd(std64(string(final)), "+ ")
	c.cmd("=", "+OK")
	c.cmd("QUIT", "+OK")
}

func TestAuthSCRAMFailures(t *testing.T) {
	e := newEnv(t, Config{}, true)
	c := e.dialTLS()
	plainErr := c.cmd("AUTH PLAIN "+plain(testUser, "wrong"), "-ERR [AUTH] ")
	if got := c.scramTo(&testenv.SCRAMClient{User: testUser, Password: "wrong"}); got != plainErr {
		t.Errorf("SCRAM with a wrong password: %q; PLAIN said %q", got, plainErr)
	}
	if got := c.scramTo(&testenv.SCRAMClient{User: "nobody@example.test", Password: "wrong"}); got != plainErr {
		t.Errorf("SCRAM for an unknown user: %q; PLAIN said %q", got, plainErr)
	}
	c.closed() // maxAuthFailures

	// Malformed exchanges: an error saying what is wrong.
	bad := func(c *client, first, final, want string) {
		t.Helper()
		got := c.cmd("AUTH SCRAM-SHA-256 "+std64(first), "")
		if final != "" {
			got = c.cmd(std64(final), "")
		}
		if !strings.HasPrefix(got, "-ERR malformed authentication exchange: SCRAM-SHA-256: ") || !strings.Contains(got, want) {
			t.Errorf("%q, %q: %q, want %q", first, final, got, want)
		}
	}
	c = e.dialTLS()
	bad(c, "n,,r=abc", "", "must start with n= and r=")
	bad(c, "p=tls-unique,,n="+testUser+",r=abc", "", "channel binding is not supported")
	c = e.dialTLS()
	bad(c, "n,,n="+testUser+",r=abc", "c=eSws,r=abc,p=AAAA", "channel binding (c=) does not match")
	bad(c, "n,,n="+testUser+",r=abc", "c=biws,r=abc,p=AAAA", "nonce (r=) does not match")
	c = e.dialTLS()
	bad(c, "n,,n="+testUser+",r=abc", "c=biws,r=abc", "no proof")
	c.cmd("AUTH SCRAM-SHA-256 "+std64("n,,n="+testUser+",r=abc"), "+ ")
	c.cmd("not base64!", "-ERR invalid base64")

	// The client breaks off after the server-final-message: not logged in.
	c = e.dialTLS()
	if got := c.scramTo(&testenv.SCRAMClient{User: testUser, Password: testPass}); !strings.HasPrefix(got, "+ ") {
		t.Fatalf("right password: %q", got)
	}
	c.cmd("*", "-ERR authentication cancelled")
	c.cmd("STAT", "-ERR")

	// Without TLS, not offered and refused.
	c = e.dial()
	c.Send("CAPA")
	c.Expect("+OK")
	if capa := strings.Join(c.multi(), "\n"); strings.Contains(capa, "SCRAM") {
		t.Errorf("CAPA before TLS: %q", capa)
	}
	c.cmd("AUTH SCRAM-SHA-256 "+std64("n,,n="+testUser+",r=abc"), "-ERR [AUTH] authentication over an unencrypted connection")
}

// TestAuthSCRAMThrottle: past auth's MaxFailures (10 by default) SCRAM is
// refused like PLAIN, before the server-first-message.
func TestAuthSCRAMThrottle(t *testing.T) {
	e := newEnv(t, Config{}, true)
	for range 10 / maxAuthFailures {
		c := e.dialTLS()
		for range maxAuthFailures {
			c.scramTo(&testenv.SCRAMClient{User: testUser, Password: "wrong"})
		}
	}
	c := e.dialTLS()
	c.scramTo(&testenv.SCRAMClient{User: testUser, Password: "wrong"}) // the 10th
	plainErr := c.cmd("AUTH PLAIN "+plain(testUser, testPass), "-ERR [SYS/TEMP] ")
	if got := c.cmd("AUTH SCRAM-SHA-256 "+std64("n,,n="+testUser+",r=abc"), "-ERR"); got != plainErr {
		t.Fatalf("throttled SCRAM: %q; PLAIN said %q", got, plainErr)
	}
}

// TestAuthSCRAMAfterPass: an account stored with only a password hash
// gets SCRAM keys at its first USER/PASS login.
func TestAuthSCRAMAfterPass(t *testing.T) {
	e := newEnv(t, Config{}, true)
	hash, err := accounts.HashPassword(testPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.AddAccount(context.Background(), store.Account{Address: "old@example.test", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	c := e.dialTLS()
	if got := c.scramTo(&testenv.SCRAMClient{User: "old@example.test", Password: testPass}); !strings.HasPrefix(got, "-ERR [AUTH] ") {
		t.Fatalf("SCRAM before any password login: %q", got)
	}
	c.cmd("USER old@example.test", "+OK")
	c.cmd("PASS "+testPass, "+OK")
	c.cmd("QUIT", "+OK")
	c = e.dialTLS()
	if got := c.scramTo(&testenv.SCRAMClient{User: "old@example.test", Password: testPass}); !strings.HasPrefix(got, "+ ") {
		t.Fatalf("SCRAM after a password login: %q", got)
	}
	c.cmd("", "+OK")
}
