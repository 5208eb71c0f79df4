package test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/accounts"
)

// TestRelayForwardSRS: carol@c.test writes to fwd@b.test, an alias of
// b.test for alice@a.test. b forwards the message with an SRS0 sender of
// b.test, so a finds SPF passing for b.test; a bounce of a forwarded
// message comes back to b's SRS0 address and goes on to carol; a forged
// SRS0 address is refused.
func TestRelayForwardSRS(t *testing.T) {
	needPort25(t)
	dns := relayDNS(t)
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	publishDomain(t, dns, dirA, "a.test", "mx.a.test")
	publishDomain(t, dns, dirB, "b.test", "mx.b.test")
	publishDomain(t, dns, dirC, "c.test", "mx.c.test")
	a := startMXNode(t, dns, "a.test", "127.0.0.2", dirA, map[string]string{"alice@a.test": "alice-pw"})
	b := startMXNode(t, dns, "b.test", "127.0.0.3", dirB, nil)
	c := startMXNode(t, dns, "c.test", "127.0.0.4", dirC, map[string]string{"carol@c.test": "carol-pw"})
	ctx := context.Background()
	m := accounts.NewManager(b.Store())
	if err := m.AddAlias(ctx, "fwd@b.test", []string{"alice@a.test"}, false); err != nil {
		t.Fatal(err)
	}
	if err := m.AddAlias(ctx, "gone@b.test", []string{"nobody@a.test"}, false); err != nil {
		t.Fatal(err)
	}

	c.submit(t, "carol@c.test", "carol-pw", []string{"fwd@b.test"}, message("carol@c.test", "fwd@b.test", "forwarded", "Hi via b"))
	got := a.waitInbox(t, "alice@a.test", 1, 15*time.Second)[0]
	srs0 := regexp.MustCompile(`(?i)^Return-Path: <(SRS0=[a-z2-7]{6}=[a-z2-7]{2}=c\.test=carol@b\.test)>\r$`)
	var rp []string
	for _, l := range strings.Split(got, "\n") {
		if rp = srs0.FindStringSubmatch(l); rp != nil {
			break
		}
	}
	if rp == nil {
		t.Fatalf("no SRS0 Return-Path of b.test for carol@c.test in:\n%s", got)
	}
	checkAuthResults(t, got, "mx.a.test", `spf=pass smtp.mailfrom="`+rp[1]+`"`, "header.d=c.test", "dmarc=pass header.from=c.test")

	// A forwarded copy refused by its destination: the DSN goes to b's
	// SRS0 address, which forwards it to carol.
	c.submit(t, "carol@c.test", "carol-pw", []string{"gone@b.test"}, message("carol@c.test", "gone@b.test", "lost", "Hello?"))
	// The DSN comes from MAILER-DAEMON@b.test, signed by b.test, so it
	// passes DMARC at c and lands in the INBOX.
	dsn := c.waitInbox(t, "carol@c.test", 1, 15*time.Second)[0]
	for _, want := range []string{"Final-Recipient: rfc822; nobody@a.test", "Action: failed", "Subject: lost", "Reporting-MTA: dns; mx.b.test"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if !strings.Contains(dsn, "Return-Path: <>") {
		t.Errorf("the DSN did not keep its null sender:\n%s", dsn)
	}

	// Anyone can write an SRS0 address; only b's are accepted.
	forged := "SRS0=AAAAAA=" + strings.SplitN(rp[1], "=", 3)[2]
	err := forgeSend("127.0.0.9", "127.0.0.3:25", "", forged, message("x@x.test", forged, "forged", "relay me"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("forged SRS0 address: %v, want 550 5.1.1", err)
	}
	waitQueueEmpty(t, b)
}
