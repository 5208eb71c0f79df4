package certs

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestACMEManagerConfig(t *testing.T) {
	m, err := OpenACME(ACME{Hostname: "Mail.Example.COM.", Dir: t.TempDir(),
		Allowed: func(_ context.Context, h string) bool { return h == "mta-sts.example.com" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err != nil {
		t.Errorf("Reload: %v", err)
	}
	base := m.TLSConfig()
	if len(base.NextProtos) != 0 {
		t.Errorf("mail doors offer ALPN %v", base.NextProtos)
	}
	web := m.ALPNConfig(base)
	if !slices.Contains(web.NextProtos, "acme-tls/1") || !slices.Contains(web.NextProtos, "http/1.1") {
		t.Errorf("web ALPN %v", web.NextProtos)
	}
	for name, want := range map[string]bool{"mail.example.com": true, "mta-sts.example.com": true, "other.example.com": false, "": false} {
		if got := m.allowed(context.Background(), name); got != want {
			t.Errorf("allowed(%q) = %v", name, got)
		}
	}
	// HTTP-01: challenges are answered, the rest goes to the fallback.
	h := m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "http://mail.example.com/", nil))
	if w.Code != 299 {
		t.Errorf("fallback not used: %d", w.Code)
	}

	// Without ACME, the helpers change nothing.
	plain := &Manager{}
	cfg := &tls.Config{}
	if plain.ALPNConfig(cfg) != cfg || plain.Prefetch(context.Background()) != nil {
		t.Error("non-ACME manager changed the configuration")
	}
}
