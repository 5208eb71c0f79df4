package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/dnstest"
	"github.com/ternmail/tern/internal/mx"
)

func TestParse(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
		mode string
		mx   int
		age  time.Duration
	}{
		{"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n", true, Enforce, 2, 24 * time.Hour},
		{"version: STSv1\nmode: testing\nmx: MX.example.com.\nmax_age: 60\nextension: x\n", true, Testing, 1, time.Minute},
		{"version: STSv1\nmode: none\nmax_age: 0\n", true, None, 0, 0},
		{"version: STSv1\nmode: enforce\nmx: a\nmax_age: 99999999999\n", true, Enforce, 1, maxMaxAge},
		{"version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", false, "", 0, 0},
		{"version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", false, "", 0, 0},
		{"version: STSv1\nmode: enforce\nmax_age: 1\n", false, "", 0, 0},
		{"version: STSv1\nmode: enforce\nmx: a\n", false, "", 0, 0},
		{"version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n", false, "", 0, 0},
	}
	for _, tc := range tests {
		p, err := Parse(tc.body)
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%q): %v", tc.body, err)
			continue
		}
		if tc.ok && (p.Mode != tc.mode || len(p.MX) != tc.mx || p.MaxAge != tc.age) {
			t.Errorf("Parse(%q) = %+v", tc.body, p)
		}
	}
}

func TestMatches(t *testing.T) {
	p := &Policy{MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com": true, "MAIL.example.com.": true, "other.example.com": false,
		"mx1.example.net": true, "example.net": false, "a.b.example.net": false,
	} {
		if p.Matches(host) != want {
			t.Errorf("Matches(%q) = %v", host, !want)
		}
	}
}

// policyServer serves body (or status) for every request and counts them.
type policyServer struct {
	srv    *httptest.Server
	body   atomic.Value // string
	status atomic.Int32
	hits   atomic.Int32
}

func startPolicyServer(t *testing.T) *policyServer {
	ps := &policyServer{}
	ps.body.Store("version: STSv1\nmode: enforce\nmx: mx.x.test\nmax_age: 3600\n")
	ps.status.Store(200)
	ps.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.hits.Add(1)
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		if s := int(ps.status.Load()); s == http.StatusFound {
			http.Redirect(w, r, "https://elsewhere.test/", s)
			return
		} else if s != 200 {
			http.Error(w, "no", s)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(ps.body.Load().(string)))
	}))
	t.Cleanup(ps.srv.Close)
	return ps
}

func TestCache(t *testing.T) {
	ps := startPolicyServer(t)
	dns := dnstest.Start(t, map[string][]string{
		"_mta-sts.x.test": {`TXT "v=STSv1; id=one"`},
		"mta-sts.x.test":  {"A 127.0.0.1"},
	})
	res, err := mx.New(mx.Config{Nameserver: dns.Addr(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The test server's certificate is for example.com: verify that
	// name, and reach the server through our resolver's answer.
	roots := x509.NewCertPool()
	roots.AddCert(ps.srv.Certificate())
	_, port, _ := net.SplitHostPort(ps.srv.Listener.Addr().String())
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			return dialVia(res)(ctx, network, net.JoinHostPort(host, port))
		},
	}
	c := NewCache(res, &http.Client{Transport: tr, Timeout: 5 * time.Second})
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := t.Context()

	get := func(step string, wantHits int32, wantMode string) {
		t.Helper()
		p, err := c.Get(ctx, "x.test")
		mode := ""
		if p != nil {
			mode = p.Mode
		}
		if mode != wantMode || ps.hits.Load() != wantHits {
			t.Fatalf("%s: policy %+v (%v), %d fetches; want mode %q after %d", step, p, err, ps.hits.Load(), wantMode, wantHits)
		}
	}
	get("first", 1, Enforce)
	get("cached", 1, Enforce)
	ps.body.Store("version: STSv1\nmode: testing\nmx: mx.x.test\nmax_age: 3600\n")
	dns.Set("_mta-sts.x.test", `TXT "v=STSv1; id=two"`)
	get("new id", 2, Testing)
	// The record disappears: the cached policy stays (no downgrade).
	dns.Set("_mta-sts.x.test")
	get("record gone", 2, Testing)
	// A new id but the server fails: the cached policy stays.
	dns.Set("_mta-sts.x.test", `TXT "v=STSv1; id=three"`)
	ps.status.Store(500)
	get("server failing", 3, Testing)
	// Expired, and the server still fails: no policy.
	now = now.Add(2 * time.Hour)
	get("expired", 4, "")
	// Redirects are not followed.
	ps.status.Store(http.StatusFound)
	get("redirect", 5, "")

	// A persisted policy survives a restart (a new Cache), even while
	// the record and the server are gone.
	dir := t.TempDir()
	ps.status.Store(200)
	c = NewCache(res, &http.Client{Transport: tr, Timeout: 5 * time.Second})
	c.now = func() time.Time { return now }
	if err := c.Persist(dir); err != nil {
		t.Fatal(err)
	}
	get("persisted fetch", 6, Testing)
	c = NewCache(res, &http.Client{Transport: tr, Timeout: 5 * time.Second})
	c.now = func() time.Time { return now }
	c.Persist(dir)
	dns.Set("_mta-sts.x.test")
	ps.status.Store(500)
	get("after restart", 6, Testing)
}
