// Package dnstest is a test-only authoritative DNS server on loopback. It
// answers over UDP and TCP on the same port from records held in a map, so
// tests of the relay, SPF, DKIM or ACME run without the outside world.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server serves the records it holds. Names it holds nothing for get
// NXDOMAIN; names it holds other types for get an empty answer (NODATA).
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	rcodes  map[string]int      // forced response codes, e.g. SERVFAIL
}

// Start serves records on 127.0.0.1 (a free port, UDP and TCP) until the
// test ends. records maps a name to RRs in zone-file syntax without the
// owner name, e.g. "b.test": {"MX 10 mx.b.test."}, "mx.b.test": {"A 127.0.0.3"}.
func Start(t testing.TB, records map[string][]string) *Server {
	t.Helper()
	s := &Server{records: map[string][]dns.RR{}, rcodes: map[string]int{}}
	for name, rrs := range records {
		if err := s.Set(name, rrs...); err != nil {
			t.Fatal(err)
		}
	}
	// UDP and TCP on the same port: take a UDP port, then try TCP on it.
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		p, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		l, err := net.Listen("tcp", p.LocalAddr().String())
		if err == nil {
			pc, ln = p, l
			break
		}
		p.Close()
	}
	if pc == nil {
		t.Fatal("dnstest: no port free for both UDP and TCP")
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// Addr is the host:port to give a resolver.
func (s *Server) Addr() string { return s.addr }

// Set replaces the records of name.
func (s *Server) Set(name string, rrs ...string) error {
	fqdn := dns.Fqdn(strings.ToLower(name))
	parsed := make([]dns.RR, 0, len(rrs))
	for _, r := range rrs {
		rr, err := dns.NewRR(fqdn + " 60 IN " + r)
		if err != nil {
			return fmt.Errorf("dnstest: %s %q: %w", name, r, err)
		}
		parsed = append(parsed, rr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[fqdn] = parsed
	return nil
}

// Fail makes every query for name answer rcode (dns.RcodeServerFailure,
// for instance); rcode 0 undoes it.
func (s *Server) Fail(name string, rcode int) {
	fqdn := dns.Fqdn(strings.ToLower(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode == 0 {
		delete(s.rcodes, fqdn)
		return
	}
	s.rcodes[fqdn] = rcode
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		s.mu.Lock()
		rcode, forced := s.rcodes[name]
		rrs, known := s.records[name]
		s.mu.Unlock()
		switch {
		case forced:
			m.Rcode = rcode
		case !known:
			m.Rcode = dns.RcodeNameError
		default:
			for _, rr := range rrs {
				t := rr.Header().Rrtype
				if t == q.Qtype || q.Qtype == dns.TypeANY || t == dns.TypeCNAME {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
		}
	} else {
		m.Rcode = dns.RcodeFormatError
	}
	w.WriteMsg(m)
}
