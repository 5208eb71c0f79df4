// Package mtasts is the sending side of MTA-STS (RFC 8461): it finds a
// domain's policy (the _mta-sts TXT record, then the policy over HTTPS),
// caches it for its max_age, and says which MX hosts it allows. The relay
// enforces it: with mode "enforce", mail goes only to a matching MX over
// TLS with a valid certificate, or waits.
package mtasts

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Modes (RFC 8461 §5).
const (
	Enforce = "enforce"
	Testing = "testing"
	None    = "none"
)

// Policy is one domain's policy.
type Policy struct {
	Mode   string
	MX     []string // patterns: "mx.example.com" or "*.example.com"
	MaxAge time.Duration
	ID     string // of the TXT record it was fetched for
}

// maxMaxAge is RFC 8461 §3.2's upper bound (about a year).
const maxMaxAge = 31557600 * time.Second

// Parse reads a policy body (RFC 8461 §3.2): "key: value" lines, CRLF or
// LF; unknown keys are ignored.
func Parse(body string) (*Policy, error) {
	p := &Policy{}
	version := ""
	age := -1
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			version = v
		case "mode":
			p.Mode = v
		case "mx":
			p.MX = append(p.MX, strings.TrimSuffix(strings.ToLower(v), "."))
		case "max_age":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("mta-sts: bad max_age %q", v)
			}
			age = n
		}
	}
	switch {
	case version != "STSv1":
		return nil, fmt.Errorf("mta-sts: version %q is not STSv1", version)
	case p.Mode != Enforce && p.Mode != Testing && p.Mode != None:
		return nil, fmt.Errorf("mta-sts: unknown mode %q", p.Mode)
	case age < 0:
		return nil, errors.New("mta-sts: no max_age")
	case p.Mode != None && len(p.MX) == 0:
		return nil, errors.New("mta-sts: no mx")
	}
	// Clamped in seconds, before the multiplication could overflow.
	p.MaxAge = time.Duration(min(age, int(maxMaxAge/time.Second))) * time.Second
	return p, nil
}

// Matches reports whether host may receive mail under p (RFC 8461
// §4.1): equal to a pattern, or one label more than a "*." pattern.
func (p *Policy) Matches(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, m := range p.MX {
		if rest, ok := strings.CutPrefix(m, "*."); ok {
			if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == rest {
				return true
			}
		} else if host == m {
			return true
		}
	}
	return false
}

// Resolver looks up TXT records and addresses (mx.Resolver), errors as
// *net.DNSError.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Cache fetches and keeps policies. It is safe for concurrent use.
type Cache struct {
	res Resolver
	// Client fetches the policy over HTTPS. Its certificate checks and
	// timeout are what RFC 8461 §3.3 asks; tests give their own roots.
	client *http.Client
	now    func() time.Time

	dir string // where policies persist across restarts; "" keeps none

	mu       sync.Mutex
	policies map[string]cached
}

type cached struct {
	p       *Policy
	expires time.Time
}

// stored is a cached policy on disk.
type stored struct {
	Policy  *Policy   `json:"policy"`
	Expires time.Time `json:"expires"`
}

// Persist keeps policies in dir as well, one JSON file per domain, so a
// restart does not forget them: forgetting would let an attacker who
// blocks the policy fetch downgrade delivery (RFC 8461 §5.1, §10.2).
func (c *Cache) Persist(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("mta-sts: %w", err)
	}
	c.dir = dir
	return nil
}

// load returns the policy of domain from memory, else from disk.
func (c *Cache) load(domain string) (cached, bool) {
	c.mu.Lock()
	cur, ok := c.policies[domain]
	c.mu.Unlock()
	if ok || c.dir == "" {
		return cur, ok
	}
	raw, err := os.ReadFile(filepath.Join(c.dir, domain+".json"))
	if err != nil {
		return cached{}, false
	}
	var st stored
	if json.Unmarshal(raw, &st) != nil || st.Policy == nil {
		return cached{}, false
	}
	cur = cached{p: st.Policy, expires: st.Expires}
	c.mu.Lock()
	c.policies[domain] = cur
	c.mu.Unlock()
	return cur, true
}

// save keeps a policy in memory and, with Persist, on disk (a cache: a
// write lost in a crash only costs a fetch).
func (c *Cache) save(domain string, cur cached) {
	c.mu.Lock()
	c.policies[domain] = cur
	c.mu.Unlock()
	if c.dir == "" {
		return
	}
	raw, err := json.Marshal(stored{Policy: cur.p, Expires: cur.expires})
	if err != nil {
		return
	}
	path := filepath.Join(c.dir, domain+".json")
	if os.WriteFile(path+".tmp", raw, 0o600) == nil {
		os.Rename(path+".tmp", path)
	}
}

// NewCache returns a cache looking up records with res and fetching with
// client (nil: a client that resolves the policy host through res too,
// with the system's roots and a 1-minute timeout). Redirects are never
// followed.
func NewCache(res Resolver, client *http.Client) *Cache {
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.DialContext = dialVia(res)
		client = &http.Client{Timeout: time.Minute, Transport: tr}
	}
	c := *client
	// RFC 8461 §3.3: redirects must not be followed.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Cache{res: res, client: &c, now: time.Now, policies: map[string]cached{}}
}

// Get returns domain's policy, or nil when it has none (or none could be
// fetched and none is cached: RFC 8461 §5 then leaves delivery as
// without MTA-STS). A mode "none" policy is returned as such.
func (c *Cache) Get(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" || strings.ContainsAny(domain, "/\\") {
		return nil, fmt.Errorf("mta-sts: bad domain %q", domain)
	}
	now := c.now()
	cur, ok := c.load(domain)
	if ok && !now.Before(cur.expires) {
		ok = false
	}
	id, err := c.lookupID(ctx, domain)
	if err != nil || id == "" {
		// §5.1: no record (or no answer) while a policy is cached: use
		// it; never downgrade on a DNS failure.
		if ok {
			return cur.p, nil
		}
		return nil, err
	}
	if ok && cur.p.ID == id {
		return cur.p, nil
	}
	p, ferr := c.fetch(ctx, domain)
	if ferr != nil {
		if ok {
			return cur.p, nil // §5.1: keep the cached policy
		}
		return nil, ferr
	}
	p.ID = id
	c.save(domain, cached{p: p, expires: now.Add(p.MaxAge)})
	return p, nil
}

// lookupID returns the id of the _mta-sts record, "" when there is none.
func (c *Cache) lookupID(ctx context.Context, domain string) (string, error) {
	txts, err := c.res.LookupTXT(ctx, "_mta-sts."+domain)
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("mta-sts: %w", err)
	}
	var ids []string
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1;") && t != "v=STSv1" {
			continue
		}
		for _, f := range strings.Split(t, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(f), "="); ok && k == "id" {
				ids = append(ids, v)
			}
		}
	}
	if len(ids) != 1 {
		return "", nil // §3.1: none, or several, is no policy
	}
	return ids[0], nil
}

// maxPolicy bounds the policy body (RFC 8461 §3.3 suggests 64 KiB).
const maxPolicy = 64 << 10

func (c *Cache) fetch(ctx context.Context, domain string) (*Policy, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://mta-sts."+domain+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mta-sts: fetching policy: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mta-sts: fetching policy: HTTP %s", resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/plain" {
		return nil, fmt.Errorf("mta-sts: policy served as %q, not text/plain", mt)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicy+1))
	if err != nil {
		return nil, fmt.Errorf("mta-sts: fetching policy: %w", err)
	}
	if len(body) > maxPolicy {
		return nil, errors.New("mta-sts: policy too large")
	}
	return Parse(string(body))
}

// dialVia dials host:port at the addresses res gives for host, in turn.
func dialVia(res Resolver) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ips, err := res.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		var last error
		for _, ip := range ips {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.IP.String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
}
