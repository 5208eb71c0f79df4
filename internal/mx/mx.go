// Package mx finds where mail for a domain goes: its MX hosts by
// preference (RFC 5321 §5.1), the domain's own address when it has no MX,
// nothing when it publishes a null MX (RFC 7505), and never ourselves.
//
// Lookups go to one configured nameserver (tests run their own, see
// dnstest) or to those of /etc/resolv.conf. Errors say whether retrying
// later can help (Permanent).
package mx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Config says where to ask and who we are.
type Config struct {
	// Nameserver is host:port of the resolver to ask; empty uses the
	// nameservers of /etc/resolv.conf.
	Nameserver string
	// Hostname is our own name: an MX host of that name is us.
	Hostname string
	// Self reports whether an address is one of ours (where our port 25
	// listens). Nil means none is.
	Self func(netip.Addr) bool
	// Timeout bounds one query to one server; zero means 5s.
	Timeout time.Duration
}

// Host is one place to deliver to, in the order to try.
type Host struct {
	Name  string // the MX host name, or the domain itself when it has no MX
	Pref  uint16
	Addrs []netip.Addr
}

// Error is a lookup failure. Permanent failures (NXDOMAIN, null MX, a
// loop, no address at all) bounce the mail; the others defer it.
type Error struct {
	Domain    string
	Reason    string
	Permanent bool
}

func (e *Error) Error() string { return e.Domain + ": " + e.Reason }

// IsPermanent reports whether err is a permanent lookup failure.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// Resolver is safe for concurrent use.
type Resolver struct {
	cfg     Config
	servers []string
	client  *dns.Client
	tcp     *dns.Client
}

// New makes a resolver; it reads /etc/resolv.conf when no nameserver is
// configured.
func New(cfg Config) (*Resolver, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	r := &Resolver{cfg: cfg,
		client: &dns.Client{Net: "udp", Timeout: cfg.Timeout},
		tcp:    &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
	}
	if cfg.Nameserver != "" {
		r.servers = []string{cfg.Nameserver}
		return r, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("mx: no nameserver configured and %w", err)
	}
	for _, s := range cc.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
	}
	if len(r.servers) == 0 {
		return nil, errors.New("mx: no nameserver configured and none in /etc/resolv.conf")
	}
	return r, nil
}

// Lookup returns the hosts to try for domain, best first; hosts of equal
// preference are shuffled so load spreads (RFC 5321 §5.1).
func (r *Resolver) Lookup(ctx context.Context, domain string) ([]Host, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" {
		return nil, &Error{Domain: domain, Reason: "empty domain", Permanent: true}
	}
	mxs, rcode, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if rcode == dns.RcodeNameError {
		return nil, &Error{Domain: domain, Reason: "domain does not exist (NXDOMAIN)", Permanent: true}
	}
	var hosts []Host
	for _, rr := range mxs {
		if m, ok := rr.(*dns.MX); ok {
			hosts = append(hosts, Host{Name: strings.TrimSuffix(strings.ToLower(m.Mx), "."), Pref: m.Preference})
		}
	}
	if len(hosts) == 1 && hosts[0].Name == "" {
		// RFC 7505 §3: a single MX of "." says the domain takes no mail.
		return nil, &Error{Domain: domain, Reason: "domain accepts no mail (null MX)", Permanent: true}
	}
	hosts = slices.DeleteFunc(hosts, func(h Host) bool { return h.Name == "" })
	if len(hosts) == 0 {
		// RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
		hosts = []Host{{Name: domain}}
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b Host) int { return int(a.Pref) - int(b.Pref) })

	var tempErr error
	for i := range hosts {
		hosts[i].Addrs, err = r.addrs(ctx, hosts[i].Name)
		if err != nil {
			tempErr = err
		}
	}
	hosts, err = r.dropSelf(domain, hosts)
	if err != nil {
		return nil, err
	}
	hosts = slices.DeleteFunc(hosts, func(h Host) bool { return len(h.Addrs) == 0 })
	if len(hosts) == 0 {
		if tempErr != nil {
			return nil, tempErr
		}
		return nil, &Error{Domain: domain, Reason: "no mail host has an address", Permanent: true}
	}
	return hosts, nil
}

// dropSelf applies RFC 5321 §5.1: when we are one of the MX hosts, only
// those more preferred than us may be tried; when none is, delivering
// would loop back to us.
func (r *Resolver) dropSelf(domain string, hosts []Host) ([]Host, error) {
	ours := -1
	for _, h := range hosts {
		if r.isSelf(h) && (ours < 0 || int(h.Pref) < ours) {
			ours = int(h.Pref)
		}
	}
	if ours < 0 {
		return hosts, nil
	}
	hosts = slices.DeleteFunc(hosts, func(h Host) bool { return int(h.Pref) >= ours })
	if len(hosts) == 0 {
		return nil, &Error{Domain: domain, Reason: "mail loops back to myself", Permanent: true}
	}
	return hosts, nil
}

func (r *Resolver) isSelf(h Host) bool {
	if r.cfg.Hostname != "" && strings.EqualFold(h.Name, strings.TrimSuffix(r.cfg.Hostname, ".")) {
		return true
	}
	if r.cfg.Self == nil {
		return false
	}
	return slices.ContainsFunc(h.Addrs, r.cfg.Self)
}

// addrs returns the IPv4 then IPv6 addresses of host. A host that does
// not exist has none; a failing server is a temporary error.
func (r *Resolver) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, _, err := r.query(ctx, host, t)
		if err != nil {
			return out, err
		}
		for _, rr := range rrs {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, nil
}

// query asks each server in turn until one answers with NOERROR or
// NXDOMAIN; it returns the answer records of type qtype. SERVFAIL, REFUSED
// and timeouts from every server are a temporary Error.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, int, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(4096, false)
	last := "no nameserver answered"
	for _, srv := range r.servers {
		in, _, err := r.client.ExchangeContext(ctx, m, srv)
		if err == nil && in.Truncated {
			in, _, err = r.tcp.ExchangeContext(ctx, m, srv)
		}
		if err != nil {
			last = fmt.Sprintf("%s lookup: %s", dns.TypeToString[qtype], r.queryError(ctx, err, srv))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			var out []dns.RR
			for _, rr := range in.Answer {
				if rr.Header().Rrtype == qtype {
					out = append(out, rr)
				}
			}
			return out, in.Rcode, nil
		default:
			last = fmt.Sprintf("%s lookup: %s from %s", dns.TypeToString[qtype], dns.RcodeToString[in.Rcode], srv)
		}
	}
	return nil, 0, &Error{Domain: name, Reason: last}
}

// queryError says why one query failed in words for `tern queue show`: a
// nameserver that never answered is named, with the time it was given,
// rather than left as a socket's "i/o timeout".
func (r *Resolver) queryError(ctx context.Context, err error, srv string) string {
	var ne net.Error
	if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("timeout: nameserver %s did not answer within %s", srv, r.cfg.Timeout)
	}
	return err.Error()
}

// ListenSelf returns a Config.Self for a server whose port 25 listens on
// listen (host:port): that address, or every address of this machine when
// the host is unspecified ("", 0.0.0.0, ::).
func ListenSelf(listen string) func(netip.Addr) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		ip = ip.Unmap()
		return func(a netip.Addr) bool { return a.Unmap() == ip }
	}
	if host != "" && net.ParseIP(host) == nil {
		// A host name: whatever it resolves to locally.
		addrs, _ := net.LookupHost(host)
		set := map[netip.Addr]bool{}
		for _, s := range addrs {
			if ip, err := netip.ParseAddr(s); err == nil {
				set[ip.Unmap()] = true
			}
		}
		return func(a netip.Addr) bool { return set[a.Unmap()] }
	}
	set := map[netip.Addr]bool{}
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range ifs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				set[p.Addr().Unmap()] = true
			}
		}
	}
	return func(a netip.Addr) bool { return set[a.Unmap()] || a.IsLoopback() }
}
