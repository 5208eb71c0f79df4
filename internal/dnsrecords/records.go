// Package dnsrecords says what a mail domain must publish in DNS for
// Tern to receive and send its mail well (Records, Zone), and checks what
// is published against it (Check), record by record, with the exact fix.
package dnsrecords

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/msgauth"
)

// Kind names what a record is for.
type Kind string

const (
	KindMX         Kind = "MX"
	KindSPF        Kind = "SPF"
	KindDKIM       Kind = "DKIM"
	KindDMARC      Kind = "DMARC"
	KindMTASTS     Kind = "MTA-STS"
	KindMTASTSHost Kind = "MTA-STS host"
	KindTLSRPT     Kind = "TLS-RPT"
	KindSRV        Kind = "SRV"
	KindAutoconfig Kind = "autoconfig"
	KindHost       Kind = "host"
)

// Record is one resource record to publish.
type Record struct {
	Kind    Kind
	Name    string // owner name, without the final dot
	Type    string // "MX", "TXT", "SRV", "CNAME"
	Value   string // RDATA as in a zone file, TXT unquoted and unsplit
	Comment string // why, for the zone file
}

// TTL of every record printed.
const TTL = 3600

// Zone is the record in zone-file syntax, TXT values quoted and split
// into strings of at most 255 bytes (RFC 1035 §3.3.14).
func (r Record) Zone() string {
	v := r.Value
	if r.Type == "TXT" {
		v = quoteTXT(v)
	}
	return fmt.Sprintf("%s. %d IN %s %s", r.Name, TTL, r.Type, v)
}

func quoteTXT(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, s[:255])
		s = s[255:]
	}
	parts = append(parts, s)
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(strings.ReplaceAll(p, `\`, `\\`), `"`, `\"`) + `"`
	}
	return strings.Join(parts, " ")
}

// Ports are the ports the doors listen on, as clients reach them; zero
// leaves a service out of the SRV records.
type Ports struct {
	Submission, Submissions, IMAP, IMAPS, POP3, POP3S int
}

// StandardPorts are the IANA ports (RFC 6409, RFC 8314, RFC 9051, RFC
// 1939).
var StandardPorts = Ports{Submission: 587, Submissions: 465, IMAP: 143, IMAPS: 993, POP3: 110, POP3S: 995}

// Setup is what the records are derived from.
type Setup struct {
	Domain   string // the mail domain
	Hostname string // this server: MX target, SRV target, HTTPS host
	Keys     []msgauth.Key
	Ports    Ports
}

// MTASTSPolicy is the policy Tern serves for a domain at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.2): enforce,
// our hostname the one MX, cached for a week.
func MTASTSPolicy(hostname string) string {
	return "version: STSv1\r\nmode: enforce\r\nmx: " + hostname + "\r\nmax_age: 604800\r\n"
}

// MTASTSID is the policy's id for the _mta-sts record: it changes when
// the policy does (RFC 8461 §3.1), so senders fetch it again.
func MTASTSID(hostname string) string {
	sum := sha256.Sum256([]byte(MTASTSPolicy(hostname)))
	return hex.EncodeToString(sum[:8])
}

// Records lists every record for s.
func Records(s Setup) []Record {
	d := strings.TrimSuffix(strings.ToLower(s.Domain), ".")
	h := strings.TrimSuffix(strings.ToLower(s.Hostname), ".")
	rs := []Record{
		{KindMX, d, "MX", "10 " + h + ".", "mail for " + d + " goes to " + h + " (RFC 5321 §5.1)"},
		{KindSPF, d, "TXT", "v=spf1 mx -all", "only the MX hosts send mail from " + d + " (RFC 7208)"},
	}
	for _, k := range s.Keys {
		rs = append(rs, Record{KindDKIM, k.DNSName(), "TXT", k.Record(),
			"public key of selector " + k.Selector + " (RFC 6376, " + map[string]string{msgauth.AlgEd25519: "RFC 8463", msgauth.AlgRSA: "RFC 8301"}[k.Alg] + ")"})
	}
	rs = append(rs,
		Record{KindDMARC, "_dmarc." + d, "TXT", "v=DMARC1; p=quarantine; rua=mailto:postmaster@" + d,
			"mail failing SPF and DKIM alignment goes to spam (RFC 7489); p=reject once all is well"},
		Record{KindMTASTS, "_mta-sts." + d, "TXT", "v=STSv1; id=" + MTASTSID(h),
			"senders must use verified TLS to " + h + " (RFC 8461)"},
		Record{KindMTASTSHost, "mta-sts." + d, "CNAME", h + ".",
			"serves https://mta-sts." + d + "/.well-known/mta-sts.txt; the certificate must cover this name"},
		Record{KindTLSRPT, "_smtp._tls." + d, "TXT", "v=TLSRPTv1; rua=mailto:postmaster@" + d,
			"where senders report TLS failures (RFC 8460)"},
	)
	srv := []struct {
		name string
		port int
		rfc  string
	}{
		{"_submission._tcp", s.Ports.Submission, "RFC 6186"}, {"_submissions._tcp", s.Ports.Submissions, "RFC 8314"},
		{"_imap._tcp", s.Ports.IMAP, "RFC 6186"}, {"_imaps._tcp", s.Ports.IMAPS, "RFC 6186"},
		{"_pop3._tcp", s.Ports.POP3, "RFC 6186"}, {"_pop3s._tcp", s.Ports.POP3S, "RFC 6186"},
	}
	for _, v := range srv {
		if v.port <= 0 {
			continue
		}
		rs = append(rs, Record{KindSRV, v.name + "." + d, "SRV", "0 1 " + strconv.Itoa(v.port) + " " + h + ".",
			"mail clients find " + strings.TrimPrefix(strings.Split(v.name, ".")[0], "_") + " here (" + v.rfc + ")"})
	}
	rs = append(rs,
		Record{KindAutoconfig, "autoconfig." + d, "CNAME", h + ".", "Thunderbird autoconfiguration"},
		Record{KindAutoconfig, "autodiscover." + d, "CNAME", h + ".", "Outlook autodiscover"},
	)
	return rs
}

// Zone writes the records as a zone-file snippet.
func Zone(w io.Writer, s Setup, rs []Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "; DNS records for %s, served by %s.\n", s.Domain, s.Hostname)
	fmt.Fprintf(&b, "; %s itself needs A/AAAA records for this server, and the server's\n", s.Hostname)
	fmt.Fprintf(&b, "; addresses PTR records naming %s.\n", s.Hostname)
	if len(s.Keys) == 0 {
		fmt.Fprintf(&b, "; No DKIM key yet: run 'tern dkim generate %s' and print these again.\n", s.Domain)
	}
	for _, r := range rs {
		fmt.Fprintf(&b, "\n; %s: %s\n%s\n", r.Kind, r.Comment, r.Zone())
	}
	_, err := io.WriteString(w, b.String())
	return err
}
