package smtpd

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/ternmail/tern/internal/msgauth"
)

// fakeChecker decides by the MAIL FROM local part and records what it
// was given.
type fakeChecker struct {
	mu   sync.Mutex
	envs []msgauth.Envelope
	msgs []string
}

func (f *fakeChecker) Check(_ context.Context, env msgauth.Envelope, msg io.Reader) (*msgauth.Result, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.envs = append(f.envs, env)
	f.msgs = append(f.msgs, string(b))
	f.mu.Unlock()
	r := &msgauth.Result{Header: "Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=" + env.MailFrom + "\r\n"}
	switch {
	case strings.HasPrefix(env.MailFrom, "reject@"):
		r.Action, r.Reason = msgauth.Reject, "DMARC policy of remote.test rejects this message"
	case strings.HasPrefix(env.MailFrom, "junk@"):
		r.Action = msgauth.Junk
	}
	return r, nil
}

func (f *fakeChecker) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.msgs)
}

func TestMXAuthentication(t *testing.T) {
	fc := &fakeChecker{}
	e := newEnv(t, envOpts{mode: MX, checker: fc})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	forged := "Authentication-Results: mx.example.org; dkim=pass header.d=bank.test\r\n" +
		"Authentication-Results: other.test; spf=fail\r\n"
	// A body over the in-memory part of the spool, to cover the file.
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", (spoolMemory/66)+100)
	msg := forged + message("ok@remote.test", "alice@example.org", "fine", big)
	c.send("ok@remote.test", []string{"alice@example.org"}, msg, 250)

	got := e.inbox("alice@example.org")
	if len(got) != 1 {
		t.Fatalf("%d messages", len(got))
	}
	if !strings.Contains(got[0], "\tfor <alice@example.org>;\r\n\t") || !strings.Contains(got[0], "Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=ok@remote.test\r\n") {
		t.Errorf("no Authentication-Results of ours:\n%.600s", got[0])
	}
	if strings.Contains(got[0], "bank.test") || !strings.Contains(got[0], "Authentication-Results: other.test; spf=fail\r\n") {
		t.Errorf("forged field kept or foreign field lost:\n%.600s", got[0])
	}
	if !strings.HasSuffix(got[0], "\r\n\r\n"+big) {
		t.Errorf("body changed")
	}
	// The checker saw the message as sent, forged field included.
	if fc.msgs[0] != msg || fc.envs[0].IP != netip.MustParseAddr("127.0.0.1") || fc.envs[0].Helo != "client.test" {
		t.Errorf("checker got %+v and %d bytes (want %d)", fc.envs[0], len(fc.msgs[0]), len(msg))
	}

	reply := c.send("reject@remote.test", []string{"alice@example.org"}, message("reject@remote.test", "alice@example.org", "no", "x\r\n"), 550)
	if !strings.HasPrefix(reply, "5.7.1 DMARC policy") {
		t.Errorf("reject reply %q", reply)
	}
	c.send("junk@remote.test", []string{"alice@example.org"}, message("junk@remote.test", "alice@example.org", "spam", "x\r\n"), 250)
	if n := len(e.inbox("alice@example.org")); n != 1 {
		t.Errorf("INBOX has %d messages after reject and junk, want 1", n)
	}
	if junk := e.mailbox("alice@example.org", "Junk"); len(junk) != 1 || !strings.Contains(junk[0], "Subject: spam") {
		t.Errorf("Junk: %d messages", len(junk))
	}
}

func TestMXTrustedNetworksUnchecked(t *testing.T) {
	fc := &fakeChecker{}
	e := newEnv(t, envOpts{mode: MX, checker: fc, cfg: func(c *Config) {
		c.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.send("reject@remote.test", []string{"alice@example.org"},
		"Authentication-Results: mx.example.org; spf=pass\r\n"+message("reject@remote.test", "alice@example.org", "local", "x\r\n"), 250)
	got := e.inbox("alice@example.org")
	if fc.calls() != 0 || len(got) != 1 || strings.Contains(got[0], "Authentication-Results") {
		t.Errorf("checker called %d times; stored:\n%s", fc.calls(), got)
	}
}
