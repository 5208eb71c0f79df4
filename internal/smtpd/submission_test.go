package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/auth"
)

// subClient connects to the submission port, does STARTTLS and EHLO.
func subClient(t *testing.T, e *testEnv) *client {
	c := e.dial()
	if caps := c.cmd("EHLO client.test", 250); strings.Contains(caps, "AUTH") {
		t.Errorf("AUTH offered before TLS:\n%s", caps)
	}
	c.write("STARTTLS\r\n")
	c.expect(220)
	tc := tlsClient(t, c, e)
	if caps := tc.cmd("EHLO client.test", 250); !strings.Contains(caps, "AUTH SCRAM-SHA-256 PLAIN LOGIN") {
		t.Errorf("AUTH not offered after TLS:\n%s", caps)
	}
	return tc
}

func TestSubmissionBeforeTLS(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	if got := c.cmd("MAIL FROM:<alice@example.org>", 530); !strings.HasPrefix(got, "5.7.0") {
		t.Errorf("MAIL before AUTH: %s", got)
	}
	// go-smtp refuses AUTH without TLS with 523 5.7.10.
	c.cmd("AUTH PLAIN "+plain("alice@example.org", testPassword), 523)
}

func TestSubmissionAuth(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission})
	c := subClient(t, e)
	c.cmd("MAIL FROM:<alice@example.org>", 530)
	wrong := c.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong"), 535)
	unknown := c.cmd("AUTH PLAIN "+plain("nobody@example.org", "wrong"), 535)
	if wrong != unknown || !strings.HasPrefix(wrong, "5.7.8") {
		t.Errorf("wrong password %q and unknown user %q differ", wrong, unknown)
	}
	c.cmd("AUTH CRAM-MD5", 504)
	// Proxy authorization (authzid of another user) is refused like a
	// wrong password; a malformed PLAIN response is a syntax error.
	c.cmd("AUTH PLAIN "+b64("bob@example.org\x00alice@example.org\x00"+testPassword), 535)
	c.cmd("AUTH PLAIN "+b64("no NULs"), 501)
	// LOGIN, step by step.
	c.cmd("AUTH LOGIN", 334)
	c.cmd(b64("Alice@Example.org"), 334)
	c.cmd(b64(testPassword), 235)
	c.cmd("AUTH PLAIN "+plain("alice@example.org", testPassword), 503)
	c.cmd("QUIT", 221)

	// A new connection: the one above has used up most of its errors.
	c = subClient(t, e)
	c.login("alice@example.org", testPassword, 235)

	if got := c.cmd("MAIL FROM:<bob@example.org>", 553); !strings.HasPrefix(got, "5.7.1") {
		t.Errorf("spoofed MAIL FROM: %s", got)
	}
	c.cmd("MAIL FROM:<>", 553)
	c.cmd("MAIL FROM:<alice+lists@example.org>", 250)
	if got := c.cmd("RCPT TO:<friend@foreign.test>", 451); !strings.HasPrefix(got, "4.4.0") {
		t.Errorf("remote recipient without relay: %s", got)
	}
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.write("From: Bob <bob@example.org>\r\nTo: bob@example.org\r\nSubject: spoof\r\n\r\nhi\r\n.\r\n")
	if got := c.expect(553); !strings.HasPrefix(got, "5.7.1") {
		t.Errorf("spoofed From: %s", got)
	}
	// Every From address counts.
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.write("From: alice@example.org, bob@example.org\r\nSubject: two\r\n\r\nhi\r\n.\r\n")
	c.expect(553)

	// No From at all.
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.write("Subject: anonymous\r\n\r\nhi\r\n.\r\n")
	c.expect(554)

	// Date and Message-ID are added when missing.
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	body := "From: =?utf-8?q?Al=C3=AFce?= <ALICE@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\nhi bob\r\n"
	c.write(body + ".\r\n")
	c.expect(250)
	c.cmd("QUIT", 221)

	got := e.inbox("bob@example.org")
	if len(got) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(got))
	}
	m := got[0]
	for _, want := range []string{"Return-Path: <alice@example.org>\r\n", "with ESMTPSA", "\r\nMessage-ID: <", "@mx.example.org>\r\n", "\r\nDate: "} {
		if !strings.Contains(m, want) {
			t.Errorf("stored message lacks %q:\n%s", want, m)
		}
	}
	if !strings.HasSuffix(m, body) {
		t.Errorf("body not intact:\n%s", m)
	}
}

func TestSubmissionThrottle(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission, authCfg: auth.Config{MaxFailures: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}})
	c := subClient(t, e)
	for i := 0; i < 3; i++ {
		c.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong"), 535)
	}
	if got := c.cmd("AUTH PLAIN "+plain("alice@example.org", testPassword), 454); !strings.HasPrefix(got, "4.7.0") {
		t.Errorf("throttled: %s", got)
	}
}

func TestSubmissionImplicitTLS(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission})
	tc, err := tls.Dial("tcp", e.tlsAddr, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	c.expect(220)
	if caps := c.cmd("EHLO client.test", 250); !strings.Contains(caps, "AUTH SCRAM-SHA-256 PLAIN LOGIN") || strings.Contains(caps, "STARTTLS") {
		t.Errorf("EHLO on 465:\n%s", caps)
	}
	c.login("bob@example.org", testPassword, 235)
	c.send("bob@example.org", []string{"alice@example.org"}, message("bob@example.org", "alice@example.org", "465", "implicit\r\n"), 250)
	if got := e.inbox("alice@example.org"); len(got) != 1 || !strings.Contains(got[0], "with ESMTPSA") {
		t.Errorf("got %q", got)
	}
}

func TestSubmissionRelay(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission, relay: true})
	c := subClient(t, e)
	c.login("alice@example.org", testPassword, 235)
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<friend@foreign.test>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.write(message("alice@example.org", "friend@foreign.test", "out", "bye\r\n") + ".\r\n")
	c.expect(250)
	q, err := e.st.ListQueue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 1 || q[0].Domain != "foreign.test" {
		t.Errorf("queue: %+v", q)
	}
	// A relayed message carries no Return-Path: the final MTA adds it.
	if got := e.inbox("bob@example.org"); len(got) != 1 || strings.Contains(got[0], "Return-Path:") {
		t.Errorf("bob: %q", got)
	}
	// REQUIRETLS cannot be honoured for remote recipients yet.
	c.cmd("MAIL FROM:<alice@example.org> REQUIRETLS", 250)
	c.cmd("RCPT TO:<friend@foreign.test>", 550)
	c.cmd("RCPT TO:<bob@example.org>", 250)
}

func TestSubmissionPlaintextAuth(t *testing.T) {
	e := newEnv(t, envOpts{mode: Submission, cfg: func(c *Config) { c.AllowPlaintextAuth = true; c.TLS = nil }})
	c := e.dial()
	if caps := c.cmd("EHLO client.test", 250); !strings.Contains(caps, "AUTH SCRAM-SHA-256 PLAIN LOGIN") || strings.Contains(caps, "STARTTLS") {
		t.Errorf("EHLO:\n%s", caps)
	}
	c.login("alice@example.org", testPassword, 235)
	c.send("alice@example.org", []string{"bob@example.org"}, message("alice@example.org", "bob@example.org", "plain", "x\r\n"), 250)
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{Mode: MX},
		{Mode: Submission, Hostname: "h"},
		{Mode: 7, Hostname: "h"},
	} {
		if _, err := New(cfg, Deps{}); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
