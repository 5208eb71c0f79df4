package smtpd

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/testenv"
)

// TestSubmissionSCRAM logs in with SCRAM-SHA-256 through go-smtp's client
// on both submission ports, then sends as the account.
func TestSubmissionSCRAM(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission})
	c, err := smtp.DialStartTLS(e.addr, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.HasPrefix(mechs, "SCRAM-SHA-256 ") {
		t.Fatalf("AUTH %q: SCRAM-SHA-256 not offered first", mechs)
	}
	if err := c.Auth(&testenv.SCRAMClient{User: "Alice@Example.org", Password: testPassword}); err != nil {
		t.Fatalf("SCRAM on 587: %v", err)
	}
	// The session is alice's: she may send as herself, not as bob.
	msg := message("alice@example.org", "bob@example.org", "scram", "hi\r\n")
	if err := c.SendMail("alice@example.org", []string{"bob@example.org"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bob@example.org", nil); err == nil || !strings.Contains(err.Error(), "553") {
		t.Fatalf("MAIL FROM bob after alice's SCRAM login: %v", err)
	}
	c.Quit()
	if got := e.inbox("bob@example.org"); len(got) != 1 || !strings.Contains(got[0], "with ESMTPSA") {
		t.Fatalf("bob's inbox: %q", got)
	}

	c, err = smtp.DialTLS(e.tlsAddr, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(&testenv.SCRAMClient{User: "bob@example.org", Password: testPassword}); err != nil {
		t.Fatalf("SCRAM on 465: %v", err)
	}
	if err := c.Auth(&testenv.SCRAMClient{User: "bob@example.org", Password: testPassword}); err == nil {
		t.Fatal("second AUTH accepted")
	}
}

// scramTo runs AUTH SCRAM-SHA-256 on a raw client with cl up to the
// client-final-message and returns the reply to it.
func (c *client) scramTo(cl *testenv.SCRAMClient) (int, string) {
	c.t.Helper()
	_, ir, _ := cl.Start()
	first := c.cmd("AUTH SCRAM-SHA-256 "+b64(string(ir)), 334)
	serverFirst, err := base64.StdEncoding.DecodeString(first)
	if err != nil {
		c.t.Fatal(err)
	}
	final, err := cl.Next(serverFirst)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(b64(string(final)) + "\r\n")
	return c.reply()
}

func TestSubmissionSCRAMFailures(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission})
	c := subClient(t, e)
	plainReply := c.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong"), 535)
	for _, user := range []string{"alice@example.org", "nobody@example.org"} {
		code, text := c.scramTo(&testenv.SCRAMClient{User: user, Password: "wrong"})
		if code != 535 || text != plainReply {
			t.Errorf("SCRAM for %s with a wrong password: %d %s; PLAIN said 535 %s", user, code, text, plainReply)
		}
	}
	// The client breaks off after the server-final-message: not logged in.
	code, text := c.scramTo(&testenv.SCRAMClient{User: "alice@example.org", Password: testPassword})
	if v, _ := base64.StdEncoding.DecodeString(text); code != 334 || !strings.HasPrefix(string(v), "v=") {
		t.Fatalf("right password: %d %s", code, text)
	}
	c.cmd("*", 501)
	c.cmd("MAIL FROM:<alice@example.org>", 530)
	c.cmd("QUIT", 221)

	// Malformed exchanges: 501 saying what is wrong.
	c = subClient(t, e)
	malformed := func(step1, step2, want string) {
		t.Helper()
		if step2 == "" {
			if got := c.cmd("AUTH SCRAM-SHA-256 "+b64(step1), 501); !strings.Contains(got, want) {
				t.Errorf("%q: %s, want %q", step1, got, want)
			}
			return
		}
		c.cmd("AUTH SCRAM-SHA-256 "+b64(step1), 334)
		if got := c.cmd(b64(step2), 501); !strings.Contains(got, want) {
			t.Errorf("%q: %s, want %q", step2, got, want)
		}
	}
	malformed("n,,r=abc", "", "must start with n= and r=")
	malformed("p=tls-unique,,n=alice@example.org,r=abc", "", "channel binding is not supported")
	malformed("n,,n=alice@example.org,r=abc", "c=eSws,r=abc,p=AAAA", "channel binding (c=) does not match")
	malformed("n,,n=alice@example.org,r=abc", "c=biws,r=abc,p=AAAA", "nonce (r=) does not match")
	malformed("n,,n=alice@example.org,r=abc", "c=biws,r=abc", "no proof")
	malformed("n,,n=alice@example.org,r=abc", "c=b!ws,r=abc,p=AAAA", "not valid base64")
	c.cmd("QUIT", 221)

	c = subClient(t, e)
	c.cmd("AUTH SCRAM-SHA-256 not-base64!", 454) // go-smtp's own answer
	c.cmd("AUTH SCRAM-SHA-256", 334)
	c.cmd("*", 501)
	// Longer than a line may be.
	if code, _ := c.reply2("AUTH SCRAM-SHA-256 " + b64("n,,n=alice@example.org,r="+strings.Repeat("a", 3000))); code/100 != 5 {
		t.Errorf("oversized client-first-message: %d", code)
	}
}

// reply2 sends line and returns the reply, whatever its code.
func (c *client) reply2(line string) (int, string) {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.reply()
}

func TestSubmissionSCRAMThrottle(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission, authCfg: auth.Config{MaxFailures: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}})
	c := subClient(t, e)
	for range 3 {
		if code, _ := c.scramTo(&testenv.SCRAMClient{User: "alice@example.org", Password: "wrong"}); code != 535 {
			t.Fatalf("wrong password: %d", code)
		}
	}
	c.cmd("QUIT", 221)
	c = subClient(t, e)
	plainReply := c.cmd("AUTH PLAIN "+plain("alice@example.org", testPassword), 454)
	// Refused at the client-first-message, with PLAIN's reply.
	if got := c.cmd("AUTH SCRAM-SHA-256 "+b64("n,,n=alice@example.org,r=abc"), 454); got != plainReply || !strings.HasPrefix(got, "4.7.0") {
		t.Fatalf("throttled SCRAM: %s; PLAIN said %s", got, plainReply)
	}
}

// TestSubmissionSCRAMAfterPlain: an account stored with only a password
// hash, as before SCRAM, can use SCRAM after one PLAIN login.
func TestSubmissionSCRAMAfterPlain(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission})
	hash, err := accounts.HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.AddAccount(context.Background(), store.Account{Address: "old@example.org", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	c := subClient(t, e)
	if code, _ := c.scramTo(&testenv.SCRAMClient{User: "old@example.org", Password: testPassword}); code != 535 {
		t.Fatalf("SCRAM before any password login: %d", code)
	}
	c.login("old@example.org", testPassword, 235)
	c.cmd("QUIT", 221)
	if a, _ := e.st.GetAccount(context.Background(), "old@example.org"); a.SCRAM == "" {
		t.Fatal("no SCRAM keys after a PLAIN login")
	}
	c = subClient(t, e)
	code, text := c.scramTo(&testenv.SCRAMClient{User: "old@example.org", Password: testPassword})
	if code != 334 {
		t.Fatalf("SCRAM after a PLAIN login: %d %s", code, text)
	}
	c.cmd("", 235)
	c.cmd("MAIL FROM:<old@example.org>", 250)
}
