package msgauth

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

// FuzzStripForged: the output is the input's fields in order, less
// some Authentication-Results fields.
func FuzzStripForged(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.b.test; dkim=pass\r\nSubject: x\r\n\r\n"))
	f.Add([]byte("Authentication-Results: (c (nested)) MX.B.TEST.;\r\n spf=pass\r\nA: b\r\n"))
	f.Add([]byte("X: y\r\n\tcont\r\nAuthentication-Results:mx.b.test\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		out := StripForged(hdr, "mx.b.test")
		for len(hdr) > 0 {
			n := fieldLen(hdr)
			field := hdr[:n]
			hdr = hdr[n:]
			if bytes.HasPrefix(out, field) {
				out = out[n:]
				continue
			}
			name, _, _ := bytes.Cut(field, []byte(":"))
			if !strings.EqualFold(strings.TrimSpace(string(name)), "Authentication-Results") {
				t.Fatalf("removed %q", field)
			}
		}
		if len(out) != 0 {
			t.Fatalf("output has more: %q", out)
		}
	})
}

// failingResolver finds nothing.
type failingResolver struct{}

func (failingResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	return nil, notFound(name)
}
func (failingResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, notFound(name)
}
func (failingResolver) LookupIPAddr(_ context.Context, name string) ([]net.IPAddr, error) {
	return nil, notFound(name)
}
func (failingResolver) LookupAddr(_ context.Context, name string) ([]string, error) {
	return nil, notFound(name)
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func FuzzCheckMessage(f *testing.F) {
	f.Add(testMsg)
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=x; h=From; bh=; b=\r\nFrom: a@a.test\r\n\r\n")
	f.Add("From: a@a.test, b@b.test\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		// No DNS: every lookup fails at once; Check must not panic.
		c := NewChecker(Config{Hostname: "mx.b.test"}, failingResolver{}, nil)
		res, err := c.Check(t.Context(), Envelope{Helo: "h", MailFrom: "a@a.test"}, strings.NewReader(msg))
		if err == nil && !strings.HasPrefix(res.Header, "Authentication-Results: mx.b.test;") {
			t.Fatalf("header %q", res.Header)
		}
	})
}
