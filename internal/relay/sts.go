package relay

import (
	"context"
	"log/slog"
	"strings"

	"github.com/ternmail/tern/internal/mtasts"
	"github.com/ternmail/tern/internal/mx"
	"github.com/ternmail/tern/internal/store"
)

// Policies finds a domain's MTA-STS policy (mtasts.Cache); nil, nil
// when it has none.
type Policies interface {
	Get(ctx context.Context, domain string) (*mtasts.Policy, error)
}

// applySTS applies domain's MTA-STS policy to its MX hosts (RFC 8461
// §5): in enforce mode, only hosts the policy names remain, and each
// must be reached over TLS with a valid certificate (verify); none left
// defers the message, never sending it elsewhere or in plaintext. In
// testing mode, mismatches are only recorded.
func (r *Relay) applySTS(ctx context.Context, domain string, hosts []mx.Host, log *slog.Logger, evs *[]store.Event) ([]mx.Host, bool, string) {
	if r.deps.Policies == nil {
		return hosts, false, ""
	}
	p, err := r.deps.Policies.Get(ctx, domain)
	if err != nil {
		log.Info("no MTA-STS policy", "err", err)
	}
	if p == nil || p.Mode == mtasts.None {
		return hosts, false, ""
	}
	var kept []mx.Host
	for _, h := range hosts {
		if p.Matches(h.Name) {
			kept = append(kept, h)
			continue
		}
		*evs = append(*evs, store.Event{Kind: "mta-sts", Detail: "MX " + h.Name + " is not in the " + p.Mode + " policy of " + domain})
		log.Warn("MX not in MTA-STS policy", "mx", h.Name, "mode", p.Mode)
	}
	if p.Mode != mtasts.Enforce {
		return hosts, false, ""
	}
	*evs = append(*evs, store.Event{Kind: "mta-sts", Detail: "enforce: verified TLS to " + joinNames(kept)})
	if len(kept) == 0 {
		return nil, true, "MTA-STS policy of " + domain + " names none of its MX hosts"
	}
	return kept, true, ""
}

func joinNames(hs []mx.Host) string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	if len(names) == 0 {
		return "no host"
	}
	return strings.Join(names, ", ")
}
