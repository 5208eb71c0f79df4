package msgauth

import (
	"context"
	"errors"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// DMARC (RFC 7489): go-msgauth parses the record; discovery, alignment
// and the policy are here.

type dmarcOutcome struct {
	value  authres.ResultValue
	policy string // applied on failure, after pct=
	reason string
}

// checkDMARC evaluates the From: domain's policy against the SPF and
// DKIM results.
func (c *Checker) checkDMARC(ctx context.Context, from string, s spfOutcome, dkims []authres.Result) dmarcOutcome {
	if from == "" {
		return dmarcOutcome{value: authres.ResultNone}
	}
	rec, atOrg, err := c.lookupDMARC(ctx, from)
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		return dmarcOutcome{value: authres.ResultNone}
	case dmarc.IsTempFail(err):
		return dmarcOutcome{value: authres.ResultTempError, reason: err.Error()}
	case err != nil:
		// RFC 7489 §6.6.3: a record that does not parse is no policy.
		return dmarcOutcome{value: authres.ResultPermError, reason: err.Error()}
	}
	spfAligned := s.value == authres.ResultPass && aligned(s.domain, from, rec.SPFAlignment)
	dkimAligned := false
	for _, d := range dkims {
		if g, ok := d.(*authres.GenericResult); ok && g.Value == authres.ResultPass &&
			aligned(g.Params["header.d"], from, rec.DKIMAlignment) {
			dkimAligned = true
		}
	}
	if spfAligned || dkimAligned {
		return dmarcOutcome{value: authres.ResultPass}
	}
	policy := rec.Policy
	if atOrg && rec.SubdomainPolicy != "" {
		policy = rec.SubdomainPolicy // §6.3 sp=: the From: domain is a subdomain
	}
	// §6.6.4: pct= applies the policy to that share of failing mail;
	// the rest gets the next weaker policy.
	if rec.Percent != nil && *rec.Percent < 100 && c.pct() >= *rec.Percent {
		switch policy {
		case dmarc.PolicyReject:
			policy = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			policy = dmarc.PolicyNone
		}
	}
	return dmarcOutcome{value: authres.ResultFail, policy: string(policy), reason: "p=" + string(policy)}
}

// lookupDMARC finds the policy record of domain, or else of its
// organizational domain (RFC 7489 §6.6.3); atOrg reports the latter.
func (c *Checker) lookupDMARC(ctx context.Context, domain string) (*dmarc.Record, bool, error) {
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return c.res.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(domain, opts)
	if !errors.Is(err, dmarc.ErrNoPolicy) {
		return rec, false, err
	}
	org := OrgDomain(domain)
	if org == domain {
		return nil, false, err
	}
	rec, err = dmarc.LookupWithOptions(org, opts)
	return rec, true, err
}

// aligned compares an authenticated domain with the From: domain: equal
// in strict mode, of the same organizational domain in relaxed mode (the
// default; RFC 7489 §3.1).
func aligned(authDomain, from string, mode dmarc.AlignmentMode) bool {
	authDomain = strings.TrimSuffix(strings.ToLower(authDomain), ".")
	if authDomain == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return authDomain == from
	}
	return OrgDomain(authDomain) == OrgDomain(from)
}

// OrgDomain is the organizational domain of domain: its registrable part
// under the Public Suffix List (RFC 7489 §3.2), or domain itself when it
// is a public suffix.
func OrgDomain(domain string) string {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}
