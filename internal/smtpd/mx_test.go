package smtpd

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

func TestMXDelivery(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	caps := c.cmd("EHLO client.test", 250)
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 52428800", "ENHANCEDSTATUSCODES",
		"STARTTLS", "CHUNKING", "BINARYMIME", "DSN", "LIMITS RCPTMAX=1000"} {
		if !strings.Contains(caps, want+"\n") && !strings.HasSuffix(caps, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, caps)
		}
	}
	if strings.Contains(caps, "AUTH") || strings.Contains(caps, "REQUIRETLS") {
		t.Errorf("plain MX EHLO offers AUTH or REQUIRETLS:\n%s", caps)
	}
	msg := message("sender@remote.test", "alice@example.org", "hello", "Body line 1\r\n..leading dot\r\nlast\r\n")
	stuffedBack := strings.Replace(msg, "\r\n..leading", "\r\n.leading", 1)
	c.send("sender@remote.test", []string{"alice@example.org"}, msg, 250)
	c.cmd("QUIT", 221)

	got := e.inbox("alice@example.org")
	if len(got) != 1 {
		t.Fatalf("inbox has %d messages, want 1", len(got))
	}
	m := got[0]
	if !strings.HasPrefix(m, "Return-Path: <sender@remote.test>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.example.org (Tern) with ESMTP id ") {
		t.Errorf("trace fields wrong:\n%s", m)
	}
	if !strings.Contains(m, "\r\n\tfor <alice@example.org>;\r\n\t") {
		t.Errorf("Received lacks for clause:\n%s", m)
	}
	if !strings.HasSuffix(m, stuffedBack) {
		t.Errorf("body not intact:\n%q\nwant suffix\n%q", m, stuffedBack)
	}
}

func TestMXUnknownUserAndPostmaster(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<sender@remote.test>", 250)
	if got := c.cmd("RCPT TO:<nobody@example.org>", 550); !strings.HasPrefix(got, "5.1.1 ") {
		t.Errorf("unknown user: %s", got)
	}
	// No admin account yet: postmaster cannot be delivered, refused clearly.
	c.cmd("RCPT TO:<postmaster@example.org>", 550)
	// go-smtp's path parser refuses the bare <postmaster> of RFC 5321
	// §4.1.1.3 before the session sees it.
	c.cmd("RCPT TO:<postmaster>", 501)

	ctx := context.Background()
	if _, err := e.st.AddAccount(ctx, store.Account{Address: "root@example.org", PasswordHash: "x", Admin: true}); err != nil {
		t.Fatal(err)
	}
	c.cmd("RCPT TO:<postmaster@example.org>", 250)
	c.cmd("RCPT TO:<PostMaster@example.net>", 250)
	c.cmd("DATA", 354)
	c.write(message("sender@remote.test", "postmaster@example.org", "abuse", "report\r\n") + ".\r\n")
	c.expect(250)
	if n := len(e.inbox("root@example.org")); n != 1 {
		t.Errorf("first admin got %d messages for postmaster, want 1", n)
	}
}

func TestMXRelayDenied(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	for _, tc := range []struct {
		rcpt string
		code int
		enh  string
	}{
		{"<victim@foreign.test>", 554, "5.7.1"},
		{"<victim@FOREIGN.test>", 554, "5.7.1"},
		{"<victim%foreign.test@example.org>", 554, "5.7.1"},
		{"<foreign.test!victim@example.org>", 554, "5.7.1"},
		{"<@example.org:victim@foreign.test>", 554, "5.7.1"},
		{"<@example.org,@example.net:victim@foreign.test>", 554, "5.7.1"},
		{`<"victim@foreign.test"@example.org>`, 553, "5.1.3"},
		{`<"victim%foreign.test"@example.org>`, 554, "5.7.1"},
		{`<"a b"@example.org>`, 553, "5.1.3"},
		{"<victim@foreign.test@example.org>", 553, "5.1.3"},
		{"<victim@[127.0.0.1]>", 553, "5.1.3"},
		{"<victim@[IPv6:::1]>", 553, "5.1.3"},
		{"<victim@127.0.0.1>", 553, "5.1.3"},
		{"<victim@foreign.test.>", 554, "5.7.1"},
		{"<alice@example.org@foreign.test>", 553, "5.1.3"},
	} {
		t.Run(tc.rcpt, func(t *testing.T) {
			c := e.dial()
			c.cmd("EHLO client.test", 250)
			c.cmd("MAIL FROM:<spammer@remote.test>", 250)
			got := c.cmd("RCPT TO:"+tc.rcpt, tc.code)
			if !strings.HasPrefix(got, tc.enh+" ") {
				t.Errorf("%s: got %s, want %s", tc.rcpt, got, tc.enh)
			}
			c.cmd("QUIT", 221)
		})
	}
	if n := len(e.inbox("alice@example.org")); n != 0 {
		t.Errorf("alice got %d messages", n)
	}
}

func TestMXPipelining(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.write("EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\n" +
		"RCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 250, 550, 250, 354} {
		c.expect(want)
	}
	c.write(message("s@remote.test", "alice@example.org", "p", "pipelined\r\n") + ".\r\n" +
		"MAIL FROM:<s@remote.test>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 250, 354} {
		c.expect(want)
	}
	c.write(message("s@remote.test", "bob@example.org", "p2", "second\r\n") + ".\r\nQUIT\r\n")
	c.expect(250)
	c.expect(221)
	if a, b := len(e.inbox("alice@example.org")), len(e.inbox("bob@example.org")); a != 1 || b != 2 {
		t.Errorf("alice %d, bob %d messages; want 1 and 2", a, b)
	}
	// Two recipients: no "for" clause.
	if m := e.inbox("alice@example.org")[0]; strings.Contains(m, "\tfor <") {
		t.Errorf("for clause with two recipients:\n%s", m)
	}
}

func TestMXSMTPUTF8(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, users: []string{"jöran@example.org", "alice@example.org"}})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	if got := c.cmd("MAIL FROM:<sender@bücher.test>", 553); !strings.HasPrefix(got, "5.6.7") {
		t.Errorf("UTF-8 sender without SMTPUTF8: %s", got)
	}
	c.cmd("MAIL FROM:<sender@remote.test>", 250)
	c.cmd("RCPT TO:<jöran@example.org>", 553)
	c.cmd("RSET", 250)
	c.cmd("MAIL FROM:<sender@bücher.test> SMTPUTF8", 250)
	c.cmd("RCPT TO:<Jöran@example.org>", 250)
	c.cmd("DATA", 354)
	c.write("From: sender@bücher.test\r\nTo: jöran@example.org\r\nSubject: grüße\r\n\r\nhallo\r\n.\r\n")
	c.expect(250)
	got := e.inbox("jöran@example.org")
	if len(got) != 1 || !strings.Contains(got[0], "with UTF8SMTP id") || !strings.Contains(got[0], "Return-Path: <sender@bücher.test>") {
		t.Fatalf("UTF-8 delivery: %q", got)
	}
}

func TestMXBDAT(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, cfg: func(c *Config) { c.MaxMessageBytes = 4096 }})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	msg := message("s@remote.test", "alice@example.org", "chunks", "one\r\ntwo\r\n")
	half := len(msg) / 2
	c.write(fmt.Sprintf("BDAT %d\r\n%s", half, msg[:half]))
	c.expect(250)
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-half, msg[half:]))
	c.expect(250)

	// BINARYMIME: bare CR and LF and NUL in the body are data.
	c.cmd("MAIL FROM:<s@remote.test> BODY=BINARYMIME", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 502) // RFC 3030 §3: BINARYMIME needs BDAT
	bin := "From: s@remote.test\r\nContent-Type: application/octet-stream\r\n\r\n\x00\r\n.\n\r.\r"
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(bin), bin))
	c.expect(250)

	// Over the size limit, declared by chunk size.
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	// Chunks of text lines: go-smtp counts chunk bytes that arrive with
	// the BDAT command against MaxLineLength (see report), so a chunk
	// must not start with 2000 bytes free of LF.
	chunk := strings.Repeat(strings.Repeat("x", 98)+"\r\n", 30)
	c.write(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
	c.expect(250)
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	if got := c.expect(552); !strings.HasPrefix(got, "5.3.4") {
		t.Errorf("BDAT overrun: %s", got)
	}
	c.cmd("NOOP", 250)
	// A new connection: go-smtp races on its own state when a BDAT
	// transaction reset by an overrun is followed by another BDAT on
	// the same connection (see session.Reset); -race would flag it.
	c.cmd("QUIT", 221)
	c = e.dial()
	c.cmd("EHLO client.test", 250)

	// Bare LF in a non-binary BDAT body is refused like in DATA.
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	bad := "Subject: x\r\n\r\nsmuggle\n.\nMAIL FROM:<x@y>\r\n"
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(bad), bad))
	c.expect(554)
	c.cmd("QUIT", 221)

	got := e.inbox("alice@example.org")
	if len(got) != 2 {
		t.Fatalf("got %d messages, want 2", len(got))
	}
	if !strings.HasSuffix(got[0], msg) || !strings.HasSuffix(got[1], bin) {
		t.Errorf("BDAT bodies not intact: %q", got)
	}
}

func TestMXSTARTTLS(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	// Commands pipelined after STARTTLS are plaintext injection
	// (CVE-2011-0411 style): they must be discarded.
	c.write("STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\n")
	c.expect(220)
	tc := tlsClient(t, c, e)
	caps := tc.cmd("EHLO client.test", 250)
	if strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, "REQUIRETLS") {
		t.Errorf("EHLO after TLS:\n%s", caps)
	}
	tc.cmd("RCPT TO:<alice@example.org>", 502) // no MAIL survived
	tc.cmd("MAIL FROM:<s@remote.test> REQUIRETLS", 250)
	tc.cmd("RCPT TO:<alice@example.org>", 250)
	tc.cmd("DATA", 354)
	tc.write(message("s@remote.test", "alice@example.org", "tls", "secret\r\n") + ".\r\n")
	tc.expect(250)
	got := e.inbox("alice@example.org")
	if len(got) != 1 || !strings.Contains(got[0], "with ESMTPS\r\n\t(TLS1.3 cipher=TLS_") {
		t.Fatalf("TLS delivery: %q", got)
	}
}

func TestMXRequireTLSWithoutTLS(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test> REQUIRETLS", 530)
}

func TestMXDSN(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test> RET=HDRS ENVID=abc+2Bdef", 250)
	c.cmd("RCPT TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.org", 250)
	c.cmd("RCPT TO:<bob@example.org> NOTIFY=NEVER", 250)
	c.cmd("RCPT TO:<bob@example.org> NOTIFY=BOGUS", 501)
	c.cmd("DATA", 354)
	c.write(message("s@remote.test", "alice@example.org", "dsn", "x\r\n") + ".\r\n")
	c.expect(250)
}

func TestMXSize(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, cfg: func(c *Config) { c.MaxMessageBytes = 10000 }})
	c := e.dial()
	if caps := c.cmd("EHLO client.test", 250); !strings.Contains(caps, "SIZE 10000") {
		t.Errorf("EHLO: %s", caps)
	}
	if got := c.cmd("MAIL FROM:<s@remote.test> SIZE=10001", 552); !strings.HasPrefix(got, "5.3.4") {
		t.Errorf("declared SIZE: %s", got)
	}
	c.cmd("MAIL FROM:<s@remote.test> SIZE=9000", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	big := strings.Repeat(strings.Repeat("y", 98)+"\r\n", 120) // 12000 bytes
	c.write(message("s@remote.test", "alice@example.org", "big", big) + ".\r\n")
	if got := c.expect(552); !strings.HasPrefix(got, "5.3.4") {
		t.Errorf("actual size: %s", got)
	}
	c.cmd("NOOP", 250)
	c.send("s@remote.test", []string{"alice@example.org"}, message("s@remote.test", "alice@example.org", "small", "ok\r\n"), 250)
	if n := len(e.inbox("alice@example.org")); n != 1 {
		t.Errorf("got %d messages, want 1", n)
	}
}

func TestMXTooManyRecipients(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, cfg: func(c *Config) { c.MaxRecipients = 3 }})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("RCPT TO:<alice+x@example.org>", 250)
	if got := c.cmd("RCPT TO:<bob+y@example.org>", 452); !strings.HasPrefix(got, "4.5.3") {
		t.Errorf("4th recipient: %s", got)
	}
	c.cmd("DATA", 354)
	c.write(message("s@remote.test", "alice@example.org", "many", "x\r\n") + ".\r\n")
	c.expect(250)
	if a, b := len(e.inbox("alice@example.org")), len(e.inbox("bob@example.org")); a != 1 || b != 1 {
		t.Errorf("alice %d bob %d, want 1 and 1", a, b)
	}
}

func TestMXLoop(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX, cfg: func(c *Config) { c.MaxReceivedHeaders = 5 }})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	hops := strings.Repeat("Received: from a by b; Thu, 26 Nov 2026 01:00:00 +0000\r\n", 6)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.write(hops + message("s@remote.test", "alice@example.org", "loop", "x\r\n") + ".\r\n")
	if got := c.expect(554); !strings.HasPrefix(got, "5.4.6") {
		t.Errorf("loop: %s", got)
	}
	// Five hops is fine.
	c.send("s@remote.test", []string{"alice@example.org"}, hops[len(hops)/6:]+message("s@remote.test", "a", "ok", "x\r\n"), 250)
}

func TestMXQuota(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	ctx := context.Background()
	a, err := e.st.GetAccount(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetQuota(ctx, a.ID, 10); err != nil {
		t.Fatal(err)
	}
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.send("s@remote.test", []string{"alice@example.org"}, message("s@remote.test", "alice@example.org", "fill", "x\r\n"), 250)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	if got := c.cmd("RCPT TO:<alice@example.org>", 452); !strings.HasPrefix(got, "4.2.2") {
		t.Errorf("over quota: %s", got)
	}
}

func TestMXErrorLimit(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<s@remote.test>", 250)
	for i := 1; i < 10; i++ {
		c.cmd(fmt.Sprintf("RCPT TO:<nobody%d@example.org>", i), 550)
	}
	if got := c.cmd("RCPT TO:<nobody10@example.org>", 421); !strings.HasPrefix(got, "4.7.0") {
		t.Errorf("10th error: %s", got)
	}
	if !c.closed() {
		t.Error("connection still open after 421")
	}
}

// TestGoSMTPErrorLimit documents go-smtp's own limit on unknown commands:
// the fourth gets 500 and the connection is closed.
func TestGoSMTPErrorLimit(t *testing.T) {
	e := newEnv(t, envOpts{mode: MX})
	c := e.dial()
	for i := 0; i < 3; i++ {
		c.cmd("XYZZ", 500)
	}
	c.write("XYZZ\r\n")
	c.expect(500)
	c.expect(500)
	if !c.closed() {
		t.Error("still open")
	}
}
