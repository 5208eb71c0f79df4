package dnsrecords

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"blitiri.com.ar/go/spf"
)

// Resolver answers the lookups of Check (mx.Resolver), with errors
// shaped as *net.DNSError.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupSRV(ctx context.Context, name string) ([]*net.SRV, error)
	LookupCNAME(ctx context.Context, name string) (string, error)
}

// Status of one record.
type Status string

const (
	OK      Status = "ok"
	Missing Status = "missing"
	Wrong   Status = "wrong"
	Failed  Status = "error" // the lookup failed: no verdict
)

// Finding is the verdict on one record.
type Finding struct {
	Record Record
	Status Status
	Found  string // what DNS holds, when it matters
	Fix    string // what to do, exactly; "" when OK
}

// Check looks up every record through res and compares; hostname is the
// server's name, whose addresses SPF must authorize.
func Check(ctx context.Context, res Resolver, hostname string, rs []Record) []Finding {
	out := make([]Finding, 0, len(rs))
	for _, r := range rs {
		f := Finding{Record: r}
		switch r.Type {
		case "MX":
			checkMX(ctx, res, &f)
		case "TXT":
			checkTXT(ctx, res, hostname, &f)
		case "SRV":
			checkSRV(ctx, res, &f)
		case "CNAME":
			checkCNAME(ctx, res, &f)
		}
		if f.Status == Missing && f.Fix == "" {
			f.Fix = "add: " + r.Zone()
		}
		out = append(out, f)
	}
	return out
}

// lookupErr sorts a failed lookup into missing (the name or record does
// not exist) or failed.
func lookupErr(f *Finding, err error) {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		f.Status = Missing
		return
	}
	f.Status = Failed
	f.Found = err.Error()
	f.Fix = "the lookup failed; check the nameserver and try again"
}

func target(v string) string {
	f := strings.Fields(v)
	return strings.TrimSuffix(strings.ToLower(f[len(f)-1]), ".")
}

func checkMX(ctx context.Context, res Resolver, f *Finding) {
	mxs, err := res.LookupMX(ctx, f.Record.Name)
	if err != nil {
		lookupErr(f, err)
		return
	}
	want := target(f.Record.Value)
	var hosts []string
	for _, m := range mxs {
		h := strings.TrimSuffix(strings.ToLower(m.Host), ".")
		hosts = append(hosts, fmt.Sprintf("%d %s", m.Pref, h))
		if h == want {
			f.Status = OK
		}
	}
	f.Found = strings.Join(hosts, ", ")
	if f.Status != OK {
		f.Status = Wrong
		f.Fix = "MX records name other hosts; add (and remove those not serving " + f.Record.Name + "): " + f.Record.Zone()
	}
}

// txtPrefix is the version tag that identifies each kind's record.
func txtPrefix(v string) string {
	p, _, _ := strings.Cut(v, ";")
	p, _, _ = strings.Cut(p, " ")
	return strings.ToLower(strings.TrimSpace(p))
}

func checkTXT(ctx context.Context, res Resolver, hostname string, f *Finding) {
	txts, err := res.LookupTXT(ctx, f.Record.Name)
	if err != nil {
		lookupErr(f, err)
		return
	}
	prefix := txtPrefix(f.Record.Value)
	var found []string
	for _, t := range txts {
		if txtPrefix(t) == prefix {
			found = append(found, t)
		}
	}
	if len(found) == 0 {
		f.Status = Missing
		return
	}
	f.Found = strings.Join(found, " | ")
	if len(found) > 1 {
		// RFC 7208 §4.5, RFC 7489 §6.6.3, RFC 8461 §3.1: more than one
		// record is as bad as none.
		f.Status = Wrong
		f.Fix = fmt.Sprintf("%d %s records where one is allowed; keep only: %s", len(found), f.Record.Kind, f.Record.Zone())
		return
	}
	got := found[0]
	f.Status = OK
	switch f.Record.Kind {
	case KindDKIM:
		if tagValue(got, "p") != tagValue(f.Record.Value, "p") {
			f.Status = Wrong
			f.Fix = "the published key is not this server's; replace it with: " + f.Record.Zone()
		}
	case KindSPF:
		checkSPFAuthorizes(ctx, res, hostname, f)
	case KindMTASTS:
		if tagValue(got, "id") == "" {
			f.Status = Wrong
			f.Fix = "the record has no id; replace it with: " + f.Record.Zone()
		}
	case KindDMARC:
		if p := tagValue(got, "p"); p != "none" && p != "quarantine" && p != "reject" {
			f.Status = Wrong
			f.Fix = "p= must be none, quarantine or reject; replace it with: " + f.Record.Zone()
		}
	}
}

// checkSPFAuthorizes asks SPF itself whether the server's addresses may
// send for the domain: a record other than ours may be right too.
func checkSPFAuthorizes(ctx context.Context, res Resolver, host string, f *Finding) {
	ips, err := res.LookupIPAddr(ctx, host)
	if err != nil {
		f.Status = Wrong
		f.Fix = host + " has no address: publish its A/AAAA records"
		return
	}
	for _, ip := range ips {
		r, _ := spf.CheckHostWithSender(ip.IP, host, "postmaster@"+f.Record.Name, spf.WithResolver(res), spf.WithContext(ctx))
		if r != spf.Pass {
			f.Status = Wrong
			f.Fix = fmt.Sprintf("SPF gives %q for this server's address %s, not pass; replace it with: %s", r, ip.IP, f.Record.Zone())
			return
		}
	}
}

// tagValue is the value of a tag=value; list (DKIM, DMARC, MTA-STS).
func tagValue(rec, tag string) string {
	for _, part := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), tag) {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

func checkSRV(ctx context.Context, res Resolver, f *Finding) {
	srvs, err := res.LookupSRV(ctx, f.Record.Name)
	if err != nil {
		lookupErr(f, err)
		return
	}
	fields := strings.Fields(f.Record.Value)
	wantPort, want := fields[2], target(f.Record.Value)
	var found []string
	for _, s := range srvs {
		t := strings.TrimSuffix(strings.ToLower(s.Target), ".")
		found = append(found, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, t))
		if t == want && fmt.Sprint(s.Port) == wantPort {
			f.Status = OK
		}
	}
	f.Found = strings.Join(found, ", ")
	if f.Status != OK {
		f.Status = Wrong
		f.Fix = "replace it with: " + f.Record.Zone()
	}
}

// checkCNAME accepts the CNAME, or addresses equal to the target's (an
// A record works as well).
func checkCNAME(ctx context.Context, res Resolver, f *Finding) {
	want := target(f.Record.Value)
	cname, err := res.LookupCNAME(ctx, f.Record.Name)
	if err == nil {
		f.Found = strings.TrimSuffix(strings.ToLower(cname), ".")
		if f.Found == want {
			f.Status = OK
			return
		}
		f.Status = Wrong
		f.Fix = "replace it with: " + f.Record.Zone()
		return
	}
	ips, err := res.LookupIPAddr(ctx, f.Record.Name)
	if err != nil {
		lookupErr(f, err)
		return
	}
	wantIPs, _ := res.LookupIPAddr(ctx, want)
	for _, ip := range ips {
		f.Found += ip.IP.String() + " "
		if !slices.ContainsFunc(wantIPs, func(w net.IPAddr) bool { return w.IP.Equal(ip.IP) }) {
			f.Status = Wrong
		}
	}
	f.Found = strings.TrimSpace(f.Found)
	if f.Status == Wrong || len(wantIPs) == 0 {
		f.Status = Wrong
		f.Fix = "its addresses are not " + want + "'s; replace them with: " + f.Record.Zone()
		return
	}
	f.Status = OK
}

// CheckHost checks the server's own name: it has addresses, and each
// address names it back in a PTR record (forward-confirmed reverse DNS,
// which receivers check; RFC 8601 §2.7.3 "iprev"). The PTR is set by
// whoever runs the address, not in the domain's zone.
func CheckHost(ctx context.Context, res Resolver, hostname string) []Finding {
	host := strings.TrimSuffix(strings.ToLower(hostname), ".")
	addr := Finding{Record: Record{Kind: KindHost, Name: host, Type: "A"}}
	ips, err := res.LookupIPAddr(ctx, host)
	if err != nil {
		lookupErr(&addr, err)
		if addr.Status == Missing {
			addr.Fix = "add: " + host + ". 3600 IN A <this server's public IPv4 address> (and AAAA for IPv6)"
		}
		return []Finding{addr}
	}
	addr.Status = OK
	out := []Finding{addr}
	for _, ip := range ips {
		rev := ip.IP.String()
		f := Finding{Record: Record{Kind: KindHost, Name: rev, Type: "PTR", Value: host + "."}}
		names, err := res.LookupAddr(ctx, rev)
		fix := "ask whoever runs " + rev + " (the hosting provider) to set its PTR record to " + host
		switch {
		case err != nil:
			lookupErr(&f, err)
			if f.Status == Missing {
				f.Fix = fix
			}
		case slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(strings.TrimSuffix(n, "."), host) }):
			f.Status = OK
		default:
			f.Status, f.Found, f.Fix = Wrong, strings.Join(names, ", "), fix
		}
		out = append(out, f)
	}
	return out
}
