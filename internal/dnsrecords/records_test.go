package dnsrecords

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/dnstest"
	"github.com/ternmail/tern/internal/msgauth"
	"github.com/ternmail/tern/internal/mx"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// testSetup is example.com served by mail.example.com, with the fixed
// keys of testdata/dkim.
func testSetup(t *testing.T) Setup {
	t.Helper()
	keys, err := msgauth.LoadKeys("testdata", "example.com")
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %d, %v", len(keys), err)
	}
	return Setup{Domain: "example.com", Hostname: "mail.example.com", Keys: keys, Ports: StandardPorts}
}

func TestZoneGolden(t *testing.T) {
	s := testSetup(t)
	var b bytes.Buffer
	if err := Zone(&b, s, Records(s)); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "example.com.zone")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("zone differs from %s (run with -update after checking):\n%s", golden, b.String())
	}
}

// publish serves rs, as a zone file would, from a test DNS server.
func publish(t *testing.T, rs []Record, extra map[string][]string) *dnstest.Server {
	t.Helper()
	byName := map[string][]string{}
	for _, r := range rs {
		z := r.Zone()
		byName[r.Name] = append(byName[r.Name], z[strings.Index(z, " IN ")+4:])
	}
	for n, v := range extra {
		byName[n] = append(byName[n], v...)
	}
	return dnstest.Start(t, byName)
}

func TestCheck(t *testing.T) {
	s := testSetup(t)
	rs := Records(s)
	host := map[string][]string{"mail.example.com": {"A 192.0.2.1"}}
	res := func(srv *dnstest.Server) *mx.Resolver {
		r, err := mx.New(mx.Config{Nameserver: srv.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	srv := publish(t, rs, host)
	hostFindings := CheckHost(t.Context(), res(srv), s.Hostname)
	if len(hostFindings) != 2 || hostFindings[0].Status != OK || hostFindings[1].Status != Missing ||
		!strings.Contains(hostFindings[1].Fix, "set its PTR record to mail.example.com") {
		t.Errorf("host without PTR: %+v", hostFindings)
	}
	srv.Set("1.2.0.192.in-addr.arpa", "PTR mail.example.com.")
	for _, f := range append(Check(t.Context(), res(srv), s.Hostname, rs), CheckHost(t.Context(), res(srv), s.Hostname)...) {
		if f.Status != OK {
			t.Errorf("%s %s: %s (found %q, fix %q)", f.Record.Kind, f.Record.Name, f.Status, f.Found, f.Fix)
		}
	}

	// Break some: a stale DKIM key, SPF that leaves the server out, the
	// DMARC record gone, an SRV on the wrong port, autoconfig elsewhere.
	broken := map[string][]string{
		"example.com": {"MX 10 mail.example.com.", `TXT "v=spf1 ip4:198.51.100.7 -all"`},
		"tern-ed-20261126._domainkey.example.com": {`TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`},
		"_dmarc.example.com":                      nil,
		"_imaps._tcp.example.com":                 {"SRV 0 1 9993 mail.example.com."},
		"autoconfig.example.com":                  {"CNAME elsewhere.example.net."},
	}
	for n, v := range broken {
		if err := srv.Set(n, v...); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]Finding{}
	for _, f := range Check(t.Context(), res(srv), s.Hostname, rs) {
		got[string(f.Record.Kind)+" "+f.Record.Name] = f
	}
	for key, want := range map[string]struct {
		status Status
		fix    string
	}{
		"SPF example.com": {Wrong, `"fail" for this server's address 192.0.2.1`},
		"DKIM tern-ed-20261126._domainkey.example.com":  {Wrong, "replace it with: tern-ed-20261126._domainkey.example.com. 3600 IN TXT \"v=DKIM1; k=ed25519; p="},
		"DMARC _dmarc.example.com":                      {Missing, `add: _dmarc.example.com. 3600 IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"`},
		"SRV _imaps._tcp.example.com":                   {Wrong, "replace it with: _imaps._tcp.example.com. 3600 IN SRV 0 1 993 mail.example.com."},
		"autoconfig autoconfig.example.com":             {Wrong, "replace it with: autoconfig.example.com. 3600 IN CNAME mail.example.com."},
		"MX example.com":                                {OK, ""},
		"DKIM tern-rsa-20261126._domainkey.example.com": {OK, ""},
	} {
		f := got[key]
		if f.Status != want.status || !strings.Contains(f.Fix, want.fix) {
			t.Errorf("%s: %s, fix %q; want %s, fix containing %q", key, f.Status, f.Fix, want.status, want.fix)
		}
	}
}
