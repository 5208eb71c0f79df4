// Package msgauth authenticates mail: DKIM signing of what Tern sends
// (keys per domain in the data directory), and for what arrives on the
// MX, SPF (RFC 7208), DKIM verification (RFC 6376, RFC 8463), DMARC
// evaluation with alignment and policy (RFC 7489), summed up in an
// Authentication-Results field (RFC 8601).
//
// Every DNS query goes through the Resolver given (the configured
// nameserver, see mx), never the system resolver behind Tern's back.
package msgauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 display names in From:
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
)

// Resolver answers the DNS queries of SPF, DKIM and DMARC, with errors
// shaped as *net.DNSError (mx.Resolver).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Config is the receiving policy.
type Config struct {
	// Hostname is our authserv-id in Authentication-Results (RFC 8601
	// §2.5).
	Hostname string
	// DMARCReject refuses mail whose domain publishes p=reject and which
	// fails DMARC at the end of data with 550 5.7.1 (RFC 7489 §6.6.3);
	// false files it into Junk as for p=quarantine.
	DMARCReject bool
	// Timeout bounds every check of one message together (default 20s).
	Timeout time.Duration
	// MaxSignatures bounds the DKIM signatures verified per message
	// (default 5); a message may carry any number, each costing a lookup.
	MaxSignatures int
}

// Checker is safe for concurrent use.
type Checker struct {
	cfg Config
	res Resolver
	log *slog.Logger
	// pct draws for the pct= tag (RFC 7489 §6.6.4): a number in [0,100).
	pct func() int
}

// NewChecker returns a Checker asking res.
func NewChecker(cfg Config, res Resolver, log *slog.Logger) *Checker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.MaxSignatures <= 0 {
		cfg.MaxSignatures = 5
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{cfg: cfg, res: res, log: log, pct: func() int { return rand.IntN(100) }}
}

// Envelope is what the SMTP session knows of a message's origin.
type Envelope struct {
	IP       netip.Addr
	Helo     string
	MailFrom string // "" for the null sender
}

// Action is what the receiving policy makes of a message.
type Action int

const (
	Accept Action = iota // deliver to INBOX
	Junk                 // deliver to Junk (DMARC p=quarantine, or p=reject without DMARCReject)
	Reject               // refuse at end of data (DMARC p=reject with DMARCReject)
)

func (a Action) String() string {
	return [...]string{"accept", "junk", "reject"}[a]
}

// Result is the outcome of Check.
type Result struct {
	SPF   authres.ResultValue
	DKIM  []authres.ResultValue // one per signature verified
	DMARC authres.ResultValue
	// Policy is the DMARC policy applied on failure ("none",
	// "quarantine", "reject"), after pct=.
	Policy string
	Action Action
	// Reason says why the action is not Accept, for the reply and logs.
	Reason string
	// Header is the Authentication-Results field, folded, ending in CRLF.
	Header string
}

// Check runs SPF on the envelope and DKIM on msg (the message as
// received, header and body) in parallel, then DMARC on their results.
// DNS failures become temperror results, never an error: Check only
// fails when msg cannot be read.
func (c *Checker) Check(ctx context.Context, env Envelope, msg io.Reader) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	spfDone := make(chan spfOutcome, 1)
	go func() { spfDone <- c.checkSPF(ctx, env) }()

	br := bufio.NewReaderSize(msg, 64<<10)
	hdrBytes, err := peekHeader(br)
	if err != nil {
		<-spfDone
		return nil, err
	}
	hdr, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdrBytes)))
	dkims, err := c.checkDKIM(ctx, br, signatureTags(hdr))
	s := <-spfDone
	if err != nil {
		return nil, err
	}
	res := &Result{SPF: s.value, DKIM: dkimValues(dkims)}
	from := headerFromDomain(hdr)
	d := c.checkDMARC(ctx, from, s, dkims)
	res.DMARC, res.Policy = d.value, d.policy
	switch {
	case d.value != authres.ResultFail:
	case d.policy == "reject" && c.cfg.DMARCReject:
		res.Action = Reject
		// ASCII only: it is the text of the SMTP reply.
		res.Reason = "DMARC policy of " + from + " rejects this message: it is neither DKIM-signed by nor sent from a server of that domain (RFC 7489)"
	case d.policy == "reject", d.policy == "quarantine":
		res.Action = Junk
		res.Reason = "fails DMARC of " + from + " with p=" + d.policy
	}
	results := make([]authres.Result, 0, len(dkims)+2)
	if len(dkims) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	results = append(results, dkims...)
	results = append(results, s.result(env))
	if from != "" {
		results = append(results, &authres.DMARCResult{Value: d.value, Reason: d.reason, From: from})
	} else {
		results = append(results, &authres.DMARCResult{Value: authres.ResultNone, Reason: "no single From: domain"})
	}
	res.Header = formatHeader(c.cfg.Hostname, results)
	return res, nil
}

func dkimValues(rs []authres.Result) []authres.ResultValue {
	out := make([]authres.ResultValue, len(rs))
	for i, r := range rs {
		switch r := r.(type) {
		case *authres.GenericResult:
			out[i] = r.Value
		case *authres.DKIMResult:
			out[i] = r.Value
		}
	}
	return out
}

// peekHeader returns the header section without consuming it.
func peekHeader(br *bufio.Reader) ([]byte, error) {
	for n := 4096; ; n *= 2 {
		b, err := br.Peek(min(n, br.Size()))
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], nil
		}
		if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
			return b[:i+2], nil
		}
		if err != nil || n >= br.Size() {
			if errors.Is(err, io.EOF) || err == nil || errors.Is(err, bufio.ErrBufferFull) {
				return b, nil // a header without body, or too long to judge wholly
			}
			return nil, err
		}
	}
}

type spfOutcome struct {
	value  authres.ResultValue
	domain string // the domain checked: MAIL FROM's, or HELO's for the null sender
	reason string
}

func (s spfOutcome) result(env Envelope) *authres.SPFResult {
	r := &authres.SPFResult{Value: s.value, Reason: s.reason}
	if env.MailFrom != "" {
		r.From = env.MailFrom
	} else {
		r.Helo = env.Helo
	}
	return r
}

// checkSPF checks the client's address against the MAIL FROM domain, or
// the HELO name for the null sender (RFC 7208 §2.4).
func (c *Checker) checkSPF(ctx context.Context, env Envelope) spfOutcome {
	_, domain, _ := strings.Cut(env.MailFrom, "@")
	if env.MailFrom == "" {
		domain = env.Helo
	}
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	o := spfOutcome{domain: domain}
	if !env.IP.IsValid() || domain == "" {
		o.value = authres.ResultNone
		return o
	}
	r, err := spf.CheckHostWithSender(net.IP(env.IP.AsSlice()), env.Helo, env.MailFrom,
		spf.WithResolver(ctxResolver{c.res}), spf.WithContext(ctx))
	o.value = authres.ResultValue(r)
	if err != nil && r != spf.Pass {
		o.reason = err.Error()
	}
	return o
}

// ctxResolver adapts Resolver to spf.DNSResolver (the same methods).
type ctxResolver struct{ Resolver }

// checkDKIM verifies every signature (up to MaxSignatures). tags are the
// selector and algorithm of each signature, in the order go-msgauth
// verifies them (the header's).
func (c *Checker) checkDKIM(ctx context.Context, r io.Reader, tags [][2]string) ([]authres.Result, error) {
	verifs, err := dkim.VerifyWithOptions(r, &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return c.res.LookupTXT(ctx, name) },
		MaxVerifications: c.cfg.MaxSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// A malformed header section: no signature can be judged.
		c.log.Debug("dkim verify", "err", err)
		return []authres.Result{&authres.DKIMResult{Value: authres.ResultPermError, Reason: "malformed message"}}, nil
	}
	out := make([]authres.Result, 0, len(verifs))
	for i, v := range verifs {
		// A generic result, to add the selector and algorithm (RFC 8601
		// §2.7.1 header.s, header.a) that DKIMResult lacks.
		r := &authres.GenericResult{Method: "dkim", Value: authres.ResultPass, Params: map[string]string{
			"header.d": v.Domain, "header.i": v.Identifier,
		}}
		if i < len(tags) {
			r.Params["header.s"], r.Params["header.a"] = tags[i][0], tags[i][1]
		}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			r.Value, r.Params["reason"] = authres.ResultTempError, v.Err.Error()
		case dkim.IsPermFail(v.Err):
			r.Value, r.Params["reason"] = authres.ResultPermError, v.Err.Error()
		default:
			r.Value, r.Params["reason"] = authres.ResultFail, v.Err.Error()
		}
		out = append(out, r)
	}
	return out, nil
}

// signatureTags returns the s= and a= tags of each DKIM-Signature field.
func signatureTags(h textproto.Header) [][2]string {
	var out [][2]string
	for f := h.FieldsByKey("DKIM-Signature"); f.Next(); {
		out = append(out, [2]string{tagOf(f.Value(), "s"), tagOf(f.Value(), "a")})
	}
	return out
}

// tagOf is the value of tag in a tag=value list (RFC 6376 §3.2).
func tagOf(list, tag string) string {
	for _, part := range strings.Split(list, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == tag {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

// formatHeader writes the field with one result per line (RFC 8601
// §2.2).
func formatHeader(id string, results []authres.Result) string {
	var b strings.Builder
	b.WriteString("Authentication-Results: " + id)
	for _, r := range results {
		one := strings.TrimPrefix(authres.Format("", []authres.Result{r}), "; ")
		b.WriteString(";\r\n\t" + strings.TrimSpace(one))
	}
	b.WriteString("\r\n")
	return b.String()
}

// StripForged removes from a header section every Authentication-Results
// field whose authserv-id is ours: only we may say what we verified
// (RFC 8601 §5). Fields of other servers stay. It returns hdr itself when
// nothing was removed.
func StripForged(hdr []byte, hostname string) []byte {
	orig := hdr
	var out []byte
	removed := false
	for len(hdr) > 0 {
		n := fieldLen(hdr)
		field := hdr[:n]
		hdr = hdr[n:]
		if name, val, ok := bytes.Cut(field, []byte(":")); ok &&
			strings.EqualFold(strings.TrimSpace(string(name)), "Authentication-Results") &&
			strings.EqualFold(authservID(string(val)), strings.TrimSuffix(hostname, ".")) {
			removed = true
			continue
		}
		out = append(out, field...)
	}
	if !removed {
		return orig
	}
	return out
}

// fieldLen is the length of the first header field of hdr, continuation
// lines included.
func fieldLen(hdr []byte) int {
	i := 0
	for {
		j := bytes.IndexByte(hdr[i:], '\n')
		if j < 0 {
			return len(hdr)
		}
		i += j + 1
		if i >= len(hdr) || (hdr[i] != ' ' && hdr[i] != '\t') {
			return i
		}
	}
}

// authservID is the first token of an Authentication-Results value,
// after comments and folding whitespace.
func authservID(v string) string {
	var b strings.Builder
	depth := 0
	for _, r := range v {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth > 0:
		case r == ';' || ((r == ' ' || r == '\t' || r == '\r' || r == '\n') && b.Len() > 0):
			return strings.TrimSuffix(b.String(), ".")
		case r == ' ' || r == '\t' || r == '\r' || r == '\n':
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSuffix(b.String(), ".")
}
