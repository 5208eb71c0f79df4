package pop3d

import (
	"crypto/tls"
	"slices"
	"testing"
)

func TestSTLS(t *testing.T) {
	e := newEnv(t, Config{}, true)
	e.put(msg1)
	c := e.dial()
	// A command pipelined after STLS arrives in the clear and must be
	// discarded, not run inside the TLS session (RFC 2595 §4).
	c.Send("STLS\r\nUSER injected")
	c.Expect("+OK")
	tc := tls.Client(c.Conn, e.clientTLS())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, tc)
	c.Send("CAPA")
	c.Expect("+OK")
	capa := c.multi()
	if slices.Contains(capa, "STLS") || !slices.Contains(capa, "USER") || !slices.Contains(capa, "SASL SCRAM-SHA-256 PLAIN LOGIN") {
		t.Errorf("CAPA after STLS = %q", capa)
	}
	c.cmd("PASS "+testPass, "-ERR PASS must follow USER") // the injected USER was dropped
	c.cmd("STLS", "-ERR TLS already active")
	c.cmd("USER "+testUser, "+OK")
	c.cmd("PASS "+testPass, "+OK maildrop has 1 messages")
	c.cmd("RETR 1", "+OK")
	if got := string(c.body()); got != msg1 {
		t.Errorf("RETR over STLS = %q", got)
	}
	c.cmd("QUIT", "+OK")
}

func TestImplicitTLS(t *testing.T) {
	e := newEnv(t, Config{}, true)
	e.put(msg1)
	tc, err := tls.Dial("tcp", e.tls, e.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, tc)
	c.Expect("+OK pop.example.test")
	c.Send("CAPA")
	c.Expect("+OK")
	if capa := c.multi(); slices.Contains(capa, "STLS") || !slices.Contains(capa, "USER") {
		t.Errorf("CAPA on port 995 = %q", capa)
	}
	c.cmd("AUTH PLAIN "+plain(testUser, testPass), "+OK")
	c.cmd("DELE 1", "+OK")
	c.cmd("QUIT", "+OK")
	if got := e.uids(); len(got) != 0 {
		t.Errorf("store has %v after QUIT", got)
	}
}

func TestServeTLSNeedsConfig(t *testing.T) {
	e := newEnv(t, Config{AllowPlaintextAuth: true}, false)
	if err := e.srv.ServeTLS(nil); err == nil {
		t.Error("ServeTLS without Config.TLS succeeded")
	}
	c := e.dial()
	c.cmd("STLS", "-ERR STLS not available")
}
