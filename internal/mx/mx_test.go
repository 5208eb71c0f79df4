package mx

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ternmail/tern/internal/dnstest"
)

func TestLookup(t *testing.T) {
	srv := dnstest.Start(t, map[string][]string{
		"pref.test":     {"MX 20 mx2.pref.test.", "MX 10 mx1.pref.test."},
		"mx1.pref.test": {"A 127.0.0.2"},
		"mx2.pref.test": {"A 127.0.0.3", "AAAA ::1"},
		"bare.test":     {"A 127.0.0.4"},
		"null.test":     {"MX 0 ."},
		"noaddr.test":   {"MX 10 nowhere.noaddr.test."},
		"self.test":     {"MX 10 mx.self.test.", "MX 20 backup.test."},
		"mx.self.test":  {"A 127.0.0.9"},
		"backup.test":   {"A 127.0.0.8"},
		"loop.test":     {"MX 10 me.example."},
		"me.example":    {"A 127.0.0.7"},
		"ipself.test":   {"MX 10 other.test."},
		"other.test":    {"A 127.0.0.9"},
		"broken.test":   {"MX 10 mx.broken.test."},
	})
	srv.Fail("broken.test", dns.RcodeServerFailure)
	self := netip.MustParseAddr("127.0.0.9")
	r, err := New(Config{Nameserver: srv.Addr(), Hostname: "me.example", Timeout: time.Second,
		Self: func(a netip.Addr) bool { return a == self }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain    string
		want      []string // host names in order
		permanent bool     // when an error is expected
		temporary bool
	}{
		{domain: "pref.test", want: []string{"mx1.pref.test", "mx2.pref.test"}},
		{domain: "PREF.test.", want: []string{"mx1.pref.test", "mx2.pref.test"}},
		{domain: "bare.test", want: []string{"bare.test"}},
		{domain: "null.test", permanent: true},
		{domain: "nxdomain.test", permanent: true},
		{domain: "noaddr.test", permanent: true},
		{domain: "loop.test", permanent: true},
		{domain: "ipself.test", permanent: true},
		{domain: "broken.test", temporary: true},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			hosts, err := r.Lookup(t.Context(), tc.domain)
			if tc.permanent || tc.temporary {
				if err == nil {
					t.Fatalf("got %v, want an error", hosts)
				}
				if IsPermanent(err) != tc.permanent {
					t.Fatalf("error %v: permanent = %v, want %v", err, IsPermanent(err), tc.permanent)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, h := range hosts {
				names = append(names, h.Name)
				if len(h.Addrs) == 0 {
					t.Errorf("%s has no address", h.Name)
				}
			}
			if len(names) != len(tc.want) {
				t.Fatalf("hosts %v, want %v", names, tc.want)
			}
			for i := range names {
				if names[i] != tc.want[i] {
					t.Fatalf("hosts %v, want %v", names, tc.want)
				}
			}
		})
	}
	// We are the primary of self.test: nothing better to send to.
	if _, err := r.Lookup(t.Context(), "self.test"); !IsPermanent(err) {
		t.Errorf("self.test: %v, want a permanent loop error", err)
	}
}

func TestLookupTimeout(t *testing.T) {
	// Nothing answers on this port: a temporary error, quickly.
	r, err := New(Config{Nameserver: "127.0.0.1:9", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Lookup(t.Context(), "x.test")
	if err == nil || IsPermanent(err) {
		t.Fatalf("got %v, want a temporary error", err)
	}
}

func TestLookupNoAnswer(t *testing.T) {
	// A nameserver that reads and never answers: a temporary error that
	// says so.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r, err := New(Config{Nameserver: pc.LocalAddr().String(), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Lookup(t.Context(), "x.test")
	want := "x.test: MX lookup: timeout: nameserver " + pc.LocalAddr().String() + " did not answer within 200ms"
	if err == nil || IsPermanent(err) || err.Error() != want {
		t.Fatalf("got %v, want the temporary error %q", err, want)
	}
}

func TestEqualPreferenceShuffled(t *testing.T) {
	srv := dnstest.Start(t, map[string][]string{
		"eq.test":   {"MX 10 a.eq.test.", "MX 10 b.eq.test."},
		"a.eq.test": {"A 127.0.0.2"},
		"b.eq.test": {"A 127.0.0.3"},
	})
	r, _ := New(Config{Nameserver: srv.Addr()})
	seen := map[string]bool{}
	for range 50 {
		hosts, err := r.Lookup(t.Context(), "eq.test")
		if err != nil {
			t.Fatal(err)
		}
		seen[hosts[0].Name] = true
	}
	if len(seen) != 2 {
		t.Errorf("first host always %v", seen)
	}
}
