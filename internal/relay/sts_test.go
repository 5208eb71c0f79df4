package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/mtasts"
)

type fakePolicies map[string]*mtasts.Policy

func (f fakePolicies) Get(_ context.Context, domain string) (*mtasts.Policy, error) {
	return f[domain], nil
}

// stsHarness is a relay whose verified-TLS roots trust the peer's
// certificate (for "peer.test"), with the policies given.
func stsHarness(t *testing.T, p *peer, mxName string, pol *mtasts.Policy) *harness {
	t.Helper()
	leaf, err := x509.ParseCertificate(p.srv.TLSConfig.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	cfg := Config{TLS: &tls.Config{InsecureSkipVerify: true, RootCAs: roots, MinVersion: tls.VersionTLS12}}
	return newHarness(t, fakeDNS{"there.test": {host(mxName, 1)}}, map[byte]string{1: p.addr}, cfg,
		func(d *Deps) { d.Policies = fakePolicies{"there.test": pol} })
}

func TestMTASTSEnforce(t *testing.T) {
	p := startPeer(t, false)
	h := stsHarness(t, p, "peer.test", &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{"*.test"}})
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "delivery", func() bool { return h.queueLen(t) == 0 })
	if j := h.journey(t, 1); !strings.Contains(j, "certificate verified, MTA-STS") {
		t.Errorf("journey:\n%s", j)
	}
}

// deferred waits for entry 1's first attempt to end, deferred, and
// checks the peer got nothing.
func deferred(t *testing.T, h *harness, p *peer, want string) {
	t.Helper()
	waitFor(t, "an attempt", func() bool {
		q, _ := h.st.ListQueue(context.Background())
		return len(q) == 1 && q[0].Attempts > 0
	})
	q, _ := h.st.ListQueue(context.Background())
	if !strings.Contains(q[0].LastError, want) {
		t.Errorf("last error %q, want %q\n%s", q[0].LastError, want, h.journey(t, 1))
	}
	if n := len(p.messages()); n != 0 {
		t.Errorf("peer got %d messages despite the policy", n)
	}
	if len(h.bounces.list()) != 0 {
		t.Errorf("bounced instead of deferred")
	}
}

func TestMTASTSEnforceUnlistedMX(t *testing.T) {
	p := startPeer(t, false)
	h := stsHarness(t, p, "peer.test", &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{"mx.there.test"}})
	h.queue(t, "a@here.test", msg, "x@there.test")
	deferred(t, h, p, "names none of its MX hosts")
	if h.dials.Load() != 0 {
		t.Errorf("dialled an MX the policy does not name")
	}
}

func TestMTASTSEnforceBadCertificate(t *testing.T) {
	p := startPeer(t, false)
	// The MX is called mx.there.test, its certificate is for peer.test.
	h := stsHarness(t, p, "mx.there.test", &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{"mx.there.test"}})
	h.queue(t, "a@here.test", msg, "x@there.test")
	deferred(t, h, p, "MTA-STS policy requires valid TLS")
}

func TestMTASTSTestingDelivers(t *testing.T) {
	p := startPeer(t, false)
	h := stsHarness(t, p, "mx.there.test", &mtasts.Policy{Mode: mtasts.Testing, MX: []string{"other.test"}})
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "delivery", func() bool { return h.queueLen(t) == 0 })
	if j := h.journey(t, 1); !strings.Contains(j, "mta-sts MX mx.there.test is not in the testing policy") {
		t.Errorf("journey:\n%s", j)
	}
}
