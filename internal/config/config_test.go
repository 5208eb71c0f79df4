package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tern.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOverridesDefaults(t *testing.T) {
	p := write(t, `
hostname = "mail.example.com"
[listen]
smtp = ":25"
pop3 = ""
[limits]
smtp_timeout = "90s"
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mail.example.com" || c.Listen.SMTP != ":25" {
		t.Errorf("got %+v", c)
	}
	if c.Listen.POP3 != "" {
		t.Errorf("explicit empty listener should disable, got %q", c.Listen.POP3)
	}
	if c.Listen.IMAP != Default().Listen.IMAP {
		t.Errorf("absent key should keep default, got %q", c.Listen.IMAP)
	}
	if c.Limits.SMTPTimeout.Duration != 90*time.Second {
		t.Errorf("smtp_timeout = %v", c.Limits.SMTPTimeout)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownKeysNameKeyAndLine(t *testing.T) {
	p := write(t, "hostname = \"x\"\n\n[listen]\nsmtp = \":25\"\nimapz = \":143\"\n[bogus]\na = 1\n")
	_, err := Load(p)
	if err == nil {
		t.Fatal("want error")
	}
	msg := err.Error()
	for _, want := range []string{`:5: unknown key "listen.imapz"`, `unknown key "bogus`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	p := write(t, "hostname = \"x\"\ndata_dir = \n")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("want line 2 in error, got %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Hostname = ""
	c.Listen.SMTP = "nonsense"
	c.Listen.IMAP = c.Listen.POP3
	c.TLS.Cert = "only-cert.pem"
	c.Limits.MaxRecipients = 0
	c.Log.Level = "loud"
	err := c.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"hostname", "listen.smtp", "also used by", "tls:", "max_recipients", "log.level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestBadDuration(t *testing.T) {
	p := write(t, "[limits]\nsmtp_timeout = \"soon\"\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "invalid duration") {
		t.Fatalf("got %v", err)
	}
}
