package wellknown

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/dnsrecords"
	"github.com/ternmail/tern/internal/mtasts"
	"github.com/ternmail/tern/internal/store"
)

type domains map[string]bool

func (d domains) GetDomain(_ context.Context, name string) (store.Domain, error) {
	if d[name] {
		return store.Domain{Name: name}, nil
	}
	return store.Domain{}, store.ErrNotFound
}

func serve(t *testing.T, h http.Handler, method, target, host, body string) (int, http.Header, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Host = host
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Header(), w.Body.String()
}

// wellFormed fails when s is not well-formed XML.
func wellFormed(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, s)
		}
	}
}

func newHandler() *Handler {
	return New(Config{Hostname: "mail.example.com", Ports: dnsrecords.StandardPorts}, domains{"example.com": true})
}

func TestMTASTS(t *testing.T) {
	h := newHandler()
	code, hdr, body := serve(t, h, "GET", "/.well-known/mta-sts.txt", "mta-sts.example.com", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || body != dnsrecords.MTASTSPolicy("mail.example.com") {
		t.Errorf("%d %v %q", code, hdr, body)
	}
	if !strings.Contains(body, "mode: enforce\r\nmx: mail.example.com\r\n") {
		t.Errorf("policy %q", body)
	}
	if code, _, _ := serve(t, h, "GET", "/.well-known/mta-sts.txt", "mta-sts.other.test", ""); code != 404 {
		t.Errorf("policy for a foreign domain: %d", code)
	}
}

func TestAutoconfig(t *testing.T) {
	h := newHandler()
	for _, tc := range []struct{ target, host string }{
		{"/mail/config-v1.1.xml?emailaddress=alice%40example.com", "mail.example.com"},
		{"/.well-known/autoconfig/mail/config-v1.1.xml", "autoconfig.example.com"},
	} {
		code, _, body := serve(t, h, "GET", tc.target, tc.host, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", tc.target, code, body)
		}
		wellFormed(t, body)
		for _, want := range []string{`<domain>example.com</domain>`, `<incomingServer type="imap">`, "<port>993</port>", "<socketType>SSL</socketType>",
			`<incomingServer type="pop3">`, `<outgoingServer type="smtp">`, "<port>465</port>", "<port>587</port>", "<socketType>STARTTLS</socketType>"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %s:\n%s", tc.target, want, body)
			}
		}
		if strings.Index(body, "<port>993</port>") > strings.Index(body, "<port>143</port>") {
			t.Errorf("implicit TLS not first")
		}
	}
	if code, _, _ := serve(t, h, "GET", "/mail/config-v1.1.xml?emailaddress=x%40other.test", "mail.example.com", ""); code != 404 {
		t.Errorf("foreign domain: %d", code)
	}
}

func TestAutodiscover(t *testing.T) {
	h := newHandler()
	req := `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>Alice@Example.com</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>
</Autodiscover>`
	code, _, body := serve(t, h, "POST", "/autodiscover/autodiscover.xml", "autodiscover.example.com", req)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	wellFormed(t, body)
	for _, want := range []string{"<Type>IMAP</Type>", "<Type>SMTP</Type>", "<Server>mail.example.com</Server>", "<Port>993</Port>",
		"<LoginName>alice@example.com</LoginName>"} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "POP3") {
		t.Errorf("POP3 in Outlook's answer:\n%s", body)
	}
	if code, _, _ := serve(t, h, "GET", "/autodiscover/autodiscover.xml", "autodiscover.example.com", ""); code != 405 {
		t.Errorf("GET: %d", code)
	}
	if code, _, _ := serve(t, h, "POST", "/autodiscover/autodiscover.xml", "x", "<nonsense"); code != 400 {
		t.Errorf("bad XML: %d", code)
	}
}

func TestMobileconfig(t *testing.T) {
	h := newHandler()
	code, hdr, body := serve(t, h, "GET", "/apple.mobileconfig?emailaddress=alice%40example.com", "mail.example.com", "")
	if code != 200 || hdr.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("%d %v %s", code, hdr, body)
	}
	wellFormed(t, body)
	for _, want := range []string{"<string>alice@example.com</string>", "<key>IncomingMailServerPortNumber</key><integer>993</integer>",
		"<key>OutgoingMailServerPortNumber</key><integer>465</integer>", "com.apple.mail.managed"} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %s:\n%s", want, body)
		}
	}
	_, _, again := serve(t, h, "GET", "/apple.mobileconfig?emailaddress=alice%40example.com", "mail.example.com", "")
	if again != body {
		t.Errorf("profile not stable: UUIDs differ")
	}
	if code, _, _ := serve(t, h, "GET", "/apple.mobileconfig", "mail.example.com", ""); code != 404 {
		t.Errorf("no address: %d", code)
	}
}

// TestPolicyFetchedByRelayCache: what Handler serves is what the relay's
// MTA-STS cache fetches and parses.
func TestPolicyFetchedByRelayCache(t *testing.T) {
	srv := httptest.NewTLSServer(newHandler())
	t.Cleanup(srv.Close)
	body, err := srv.Client().Get(srv.URL + "/.well-known/mta-sts.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Body.Close()
	raw, _ := io.ReadAll(body.Body)
	p, err := mtasts.Parse(string(raw))
	if err != nil || p.Mode != mtasts.Enforce || !p.Matches("mail.example.com") || p.Matches("other.example.com") {
		t.Errorf("policy %+v, %v", p, err)
	}
}
