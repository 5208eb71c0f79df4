package imapd

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/testenv"
)

func std64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// dialTLS connects to the implicit-TLS listener and reads the greeting.
func (e *env) dialTLS() *client {
	e.t.Helper()
	tc, err := tls.Dial("tcp", e.tlsAddr, e.clientTLS())
	if err != nil {
		e.t.Fatal(err)
	}
	c := newClient(e.t, tc)
	c.Expect("* OK ")
	return c
}

// scramTo sends AUTHENTICATE SCRAM-SHA-256 with cl's initial response,
// answers the server-first-message and returns the line after: a
// continuation with the server-final-message if the proof matched, or
// the tagged reply.
func (c *client) scramTo(tag string, cl *testenv.SCRAMClient) string {
	c.T.Helper()
	_, ir, _ := cl.Start()
	c.Send(tag + " AUTHENTICATE SCRAM-SHA-256 " + std64(string(ir)))
	sf, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(c.Expect("+ "), "+ "))
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

// TestAuthenticateSCRAM logs in with SCRAM-SHA-256 through go-imap's
// client, and by hand without an initial response.
func TestAuthenticateSCRAM(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	e.put("INBOX", "Subject: hi\r\n\r\nhello\r\n")
	c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Caps().Has(imap.AuthCap("SCRAM-SHA-256")) {
		t.Fatalf("no AUTH=SCRAM-SHA-256 over TLS: %v", c.Caps())
	}
	if err := c.Authenticate(&testenv.SCRAMClient{User: "Alice@Example.test", Password: testPass}); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT after SCRAM: %+v, %v", sel, err)
	}

	raw := e.dialTLS()
	caps := strings.Join(raw.cmd("a CAPABILITY"), " ")
	if !strings.Contains(caps, " AUTH=SCRAM-SHA-256 AUTH=PLAIN AUTH=LOGIN") {
		t.Errorf("capabilities %q: SCRAM-SHA-256 not offered first", caps)
	}
	cl := &testenv.SCRAMClient{User: testUser, Password: testPass}
	_, first, _ := cl.Start()
	raw.Send("b AUTHENTICATE SCRAM-SHA-256")
	raw.Expect("+ ")
	raw.Send(std64(string(first)))
	sf, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(raw.Expect("+ "), "+ "))
	final, err := cl.Next(sf)
	if err != nil {
		t.Fatal(err)
	}
	raw.Send(std64(string(final)))
	sfin, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(raw.Expect("+ "), "+ "))
	if _, err := cl.Next(sfin); err != nil {
		t.Fatalf("server-final-message: %v", err)
	}
	raw.Send("")
	if _, st := raw.until("b"); !strings.HasPrefix(st, "OK [CAPABILITY ") {
		t.Fatalf("AUTHENTICATE: %q", st)
	}
	raw.cmd("c SELECT INBOX")
}

func TestAuthenticateSCRAMFailures(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	c := e.dialTLS()
	_, plainNo := c.run("a AUTHENTICATE PLAIN " + std64("\x00"+testUser+"\x00wrong"))
	if !strings.HasPrefix(plainNo, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("PLAIN with a wrong password: %q", plainNo)
	}
	for _, user := range []string{testUser, "nobody@example.test"} {
		if got := c.scramTo("b", &testenv.SCRAMClient{User: user, Password: "wrong"}); got != "b "+plainNo {
			t.Errorf("SCRAM for %s with a wrong password: %q; PLAIN said %q", user, got, plainNo)
		}
	}
	// Malformed exchanges: BAD saying what is wrong.
	bad := func(first, final, want string) {
		t.Helper()
		c.Send("c AUTHENTICATE SCRAM-SHA-256 " + std64(first))
		if final != "" {
			c.Expect("+ ")
			c.Send(std64(final))
		}
		if _, st := c.until("c"); !strings.HasPrefix(st, "BAD Malformed authentication exchange: SCRAM-SHA-256: ") || !strings.Contains(st, want) {
			t.Errorf("%q, %q: %q, want %q", first, final, st, want)
		}
	}
	bad("n,,n="+testUser, "", "must start with n= and r=")
	bad("y,,n="+testUser+",r="+strings.Repeat("a", 5000), "", "client-first-message too long")
	bad("p=tls-unique,,n="+testUser+",r=abc", "", "channel binding is not supported")
	bad("n,,n="+testUser+",r=abc", "c=eSws,r=abc,p=AAAA", "channel binding (c=) does not match")
	bad("n,,n="+testUser+",r=abc", "c=biws,r=abc,p=AAAA", "nonce (r=) does not match")
	bad("n,,n="+testUser+",r=abc", "c=biws,r=abc", "no proof")
	c.Send("d AUTHENTICATE SCRAM-SHA-256 " + std64("n,,n="+testUser+",r=abc"))
	c.Expect("+ ")
	c.Send("not base64!")
	if _, st := c.until("d"); st != "BAD Invalid base64" {
		t.Errorf("bad base64: %q", st)
	}

	// The client breaks off after the server-final-message: not logged in.
	c = e.dialTLS()
	if got := c.scramTo("e", &testenv.SCRAMClient{User: testUser, Password: testPass}); !strings.HasPrefix(got, "+ ") {
		t.Fatalf("right password: %q", got)
	}
	c.Send("*")
	if _, st := c.until("e"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("cancelled: %q", st)
	}
	if _, st := c.run("f SELECT INBOX"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("SELECT after a cancelled SCRAM: %q", st)
	}

	// Without TLS, not offered and refused.
	c = e.dial()
	if caps := c.cmd("g CAPABILITY"); has(caps, "AUTH=SCRAM-SHA-256") {
		t.Errorf("SCRAM offered before TLS: %q", caps)
	}
	if _, st := c.run("h AUTHENTICATE SCRAM-SHA-256 " + std64("n,,n="+testUser+",r=abc")); !strings.HasPrefix(st, "NO [PRIVACYREQUIRED]") {
		t.Errorf("SCRAM before TLS: %q", st)
	}
}

// TestAuthenticateSCRAMThrottle: past auth's MaxFailures (10 by default)
// SCRAM is refused like PLAIN, before the server-first-message.
func TestAuthenticateSCRAMThrottle(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	c := e.dialTLS()
	for i := range 10 {
		if got := c.scramTo("a", &testenv.SCRAMClient{User: testUser, Password: "wrong"}); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("failure %d: %q", i, got)
		}
	}
	_, plainNo := c.run("b AUTHENTICATE PLAIN " + std64("\x00"+testUser+"\x00"+testPass))
	_, scramNo := c.run("c AUTHENTICATE SCRAM-SHA-256 " + std64("n,,n="+testUser+",r=abc"))
	if !strings.HasPrefix(plainNo, "NO [UNAVAILABLE]") || scramNo != plainNo {
		t.Fatalf("throttled: SCRAM %q, PLAIN %q", scramNo, plainNo)
	}
}

// TestAuthenticateSCRAMAfterLogin: an account stored with only a
// password hash gets SCRAM keys at its first LOGIN.
func TestAuthenticateSCRAMAfterLogin(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	hash, err := accounts.HashPassword(testPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.AddAccount(context.Background(), store.Account{Address: "old@example.test", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	c := e.dialTLS()
	if got := c.scramTo("a", &testenv.SCRAMClient{User: "old@example.test", Password: testPass}); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("SCRAM before any LOGIN: %q", got)
	}
	c.cmd("b LOGIN old@example.test \"" + testPass + "\"")
	c = e.dialTLS()
	if got := c.scramTo("c", &testenv.SCRAMClient{User: "old@example.test", Password: testPass}); !strings.HasPrefix(got, "+ ") {
		t.Fatalf("SCRAM after LOGIN: %q", got)
	}
	c.Send("")
	if _, st := c.until("c"); !strings.HasPrefix(st, "OK") {
		t.Fatalf("SCRAM after LOGIN: %q", st)
	}
}
