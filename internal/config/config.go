// Package config reads Tern's one TOML file into a Config: strict (an
// unknown key is an error naming it and its line), defaults in code, and
// Validate reporting every problem at once. docs/config.md documents each
// key.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration. The zero value is not useful: start
// from Default.
type Config struct {
	// Hostname is the name this server uses in greetings, Received headers
	// and the self-signed certificate.
	Hostname string `toml:"hostname"`
	// DataDir holds the database, message bodies and generated keys.
	DataDir string `toml:"data_dir"`
	// AllowPlaintextAuth lets clients log in without TLS. Only for
	// benchmarks on loopback.
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`

	Store  Store  `toml:"store"`
	Listen Listen `toml:"listen"`
	TLS    TLS    `toml:"tls"`
	DNS    DNS    `toml:"dns"`
	Limits Limits `toml:"limits"`
	Relay  Relay  `toml:"relay"`
	// MsgAuth is mail authentication (SPF, DKIM, DMARC).
	MsgAuth MsgAuth `toml:"msgauth"`
	Log     Log     `toml:"log"`
}

// Store chooses where Tern keeps its state.
type Store struct {
	// Driver is "sqlite" (one database file and a blob folder in
	// DataDir, for one node) or "postgres" (one PostgreSQL database that
	// several nodes share).
	Driver string `toml:"driver"`
	// DSN is the PostgreSQL connection string (URL or key=value form)
	// for driver "postgres".
	DSN string `toml:"dsn"`
}

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Listen has one host:port per door; an empty string disables the door.
type Listen struct {
	SMTP        string `toml:"smtp"`        // MX, port 25
	Submission  string `toml:"submission"`  // 587, STARTTLS
	Submissions string `toml:"submissions"` // 465, implicit TLS
	IMAP        string `toml:"imap"`        // 143, STARTTLS
	IMAPS       string `toml:"imaps"`       // 993, implicit TLS
	POP3        string `toml:"pop3"`        // 110, STLS
	POP3S       string `toml:"pop3s"`       // 995, implicit TLS
	HTTP        string `toml:"http"`        // webmail and admin, plain HTTP
	HTTPS       string `toml:"https"`       // webmail and admin over TLS
}

// TLS names a certificate and key; both empty means a self-signed
// certificate generated and kept in the data directory.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// ACME obtains certificates for hostname and the mta-sts,
	// autoconfig and autodiscover names of every domain from an ACME CA
	// instead (RFC 8555); the CA validates names on the https listener
	// (TLS-ALPN-01), which must be reachable on port 443.
	ACME bool `toml:"acme"`
	// ACMEDirectory is the CA's directory URL (default Let's Encrypt).
	ACMEDirectory string `toml:"acme_directory"`
	// ACMEEmail is given to the CA for expiry notices.
	ACMEEmail string `toml:"acme_email"`
	// ACMECA is a PEM file of roots to trust for the CA's own HTTPS (a
	// private or test CA).
	ACMECA string `toml:"acme_ca"`
}

// DNS configures lookups for the outbound relay.
type DNS struct {
	// Nameserver is a host:port to send queries to; empty uses the
	// system resolver.
	Nameserver string `toml:"nameserver"`
}

// Duration is a time.Duration written as "5m" or "30s" in TOML.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (write e.g. \"30s\" or \"5m\")", b)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Limits bound what one client or message may use.
type Limits struct {
	MaxMessageBytes  int64    `toml:"max_message_bytes"`
	MaxRecipients    int      `toml:"max_recipients"`
	MaxConns         int      `toml:"max_conns"`
	MaxConnsPerIP    int      `toml:"max_conns_per_ip"`
	SMTPTimeout      Duration `toml:"smtp_timeout"`
	IMAPIdleTimeout  Duration `toml:"imap_idle_timeout"`
	POP3IdleTimeout  Duration `toml:"pop3_idle_timeout"`
	AuthMaxFailures  int      `toml:"auth_max_failures"`
	AuthFailureDelay Duration `toml:"auth_failure_delay"`
	// QuotaBytes is the quota given to new accounts; 0 means none.
	QuotaBytes int64 `toml:"quota_bytes"`
}

// Relay configures the outbound queue.
type Relay struct {
	// Enabled lets mail for remote domains be queued (authenticated
	// submission and aliases forwarding to remote addresses).
	Enabled bool `toml:"enabled"`
	// Lifetime is how long a message is retried before it bounces.
	Lifetime Duration `toml:"lifetime"`
	// DelayWarning is the age at which a sender is told, once, that a
	// message is still being retried; "0s" turns the warning off.
	DelayWarning Duration `toml:"delay_warning"`
	// RetryDelay is the first retry's delay; later ones are 5, 15, 30,
	// 60, 120 and 240 times it, with jitter.
	RetryDelay Duration `toml:"retry_delay"`
	// MaxConcurrent bounds delivery attempts at once; PerDomain bounds
	// them per destination domain.
	MaxConcurrent int `toml:"max_concurrent"`
	PerDomain     int `toml:"per_domain"`
}

// MsgAuth configures mail authentication. Outgoing mail is DKIM-signed
// whenever its From: domain has keys ("tern dkim generate"); these keys
// are about what arrives on the MX.
type MsgAuth struct {
	// Verify checks SPF, DKIM and DMARC of mail arriving on the MX and
	// records the results in an Authentication-Results field.
	Verify bool `toml:"verify"`
	// DMARCReject refuses, with 550 5.7.1 at the end of data, mail that
	// fails DMARC for a domain publishing p=reject; false files it into
	// the recipient's Junk mailbox, as p=quarantine always does.
	DMARCReject bool `toml:"dmarc_reject"`
	// TrustedNetworks are client networks (CIDR) whose mail is not
	// checked: this host's own programs.
	TrustedNetworks []string `toml:"trusted_networks"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Default returns the configuration used when no file is given: a
// complete local instance on unprivileged ports.
func Default() Config {
	return Config{
		Hostname: "localhost",
		DataDir:  "tern-data",
		Store:    Store{Driver: DriverSQLite},
		Listen: Listen{
			SMTP:        "127.0.0.1:2525",
			Submission:  "127.0.0.1:2587",
			Submissions: "127.0.0.1:2465",
			IMAP:        "127.0.0.1:2143",
			IMAPS:       "127.0.0.1:2993",
			POP3:        "127.0.0.1:2110",
			POP3S:       "127.0.0.1:2995",
			HTTP:        "127.0.0.1:8080",
		},
		Limits: Limits{
			MaxMessageBytes:  50 << 20,
			MaxRecipients:    1000,
			MaxConns:         10000,
			MaxConnsPerIP:    50,
			SMTPTimeout:      Duration{5 * time.Minute},  // RFC 5321 §4.5.3.2.7
			IMAPIdleTimeout:  Duration{30 * time.Minute}, // RFC 9051 §5.4
			POP3IdleTimeout:  Duration{10 * time.Minute}, // RFC 1939 §3
			AuthMaxFailures:  10,
			AuthFailureDelay: Duration{200 * time.Millisecond},
		},
		Relay: Relay{
			Lifetime:      Duration{5 * 24 * time.Hour}, // RFC 5321 §4.5.4.1: 4-5 days
			DelayWarning:  Duration{4 * time.Hour},
			RetryDelay:    Duration{time.Minute},
			MaxConcurrent: 32,
			PerDomain:     4,
		},
		MsgAuth: MsgAuth{
			Verify:          true,
			DMARCReject:     true,
			TrustedNetworks: []string{"127.0.0.1/32", "::1/128"},
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// Load reads path over the defaults. Unknown keys are errors.
func Load(path string) (Config, error) {
	cfg := Default()
	raw, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	md, err := toml.Decode(string(raw), &cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return cfg, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("%s:%d: unknown key %q", path, keyLine(raw, k), k.String()))
	}
	return cfg, errors.Join(errs...)
}

// keyLine finds the line where key is set, for error messages; 0 when it
// cannot tell.
func keyLine(raw []byte, key toml.Key) int {
	table := strings.Join(key[:len(key)-1], ".")
	name := key[len(key)-1]
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			cur = strings.Trim(line, "[] ")
			if len(key) >= 1 && cur == key.String() {
				return n // a whole unknown table
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"`)
		if k == name && cur == table || k == key.String() && cur == "" {
			return n
		}
	}
	return 0
}

// Validate reports every problem in c at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Hostname == "" {
		bad("hostname: must be set")
	} else if strings.ContainsAny(c.Hostname, " \t\r\n/@") {
		bad("hostname: %q is not a host name", c.Hostname)
	}
	if c.DataDir == "" {
		bad("data_dir: must be set")
	}
	switch c.Store.Driver {
	case DriverSQLite:
		if c.Store.DSN != "" {
			bad("store.dsn: only used with driver %q", DriverPostgres)
		}
	case DriverPostgres:
		if c.Store.DSN == "" {
			bad("store.dsn: must be set for driver %q", DriverPostgres)
		}
	default:
		bad("store.driver: %q is not %q or %q", c.Store.Driver, DriverSQLite, DriverPostgres)
	}
	seen := map[string]string{}
	for _, l := range c.Listeners() {
		if l.Addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.Addr); err != nil {
			bad("listen.%s: %q is not host:port", l.Name, l.Addr)
		}
		if _, port, _ := net.SplitHostPort(l.Addr); port == "0" {
			continue // any free port: never a clash
		}
		if other, dup := seen[l.Addr]; dup {
			bad("listen.%s: %s is also used by listen.%s", l.Name, l.Addr, other)
		}
		seen[l.Addr] = l.Name
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls: set both cert and key, or neither for a self-signed certificate")
	}
	if c.TLS.ACME && c.TLS.Cert != "" {
		bad("tls.acme: certificates come from the ACME CA; remove cert and key")
	}
	if c.DNS.Nameserver != "" {
		if _, _, err := net.SplitHostPort(c.DNS.Nameserver); err != nil {
			bad("dns.nameserver: %q is not host:port", c.DNS.Nameserver)
		}
	}
	l := c.Limits
	positive := []struct {
		name string
		v    int64
	}{
		{"max_message_bytes", l.MaxMessageBytes}, {"max_recipients", int64(l.MaxRecipients)},
		{"max_conns", int64(l.MaxConns)}, {"max_conns_per_ip", int64(l.MaxConnsPerIP)},
		{"smtp_timeout", int64(l.SMTPTimeout.Duration)}, {"imap_idle_timeout", int64(l.IMAPIdleTimeout.Duration)},
		{"pop3_idle_timeout", int64(l.POP3IdleTimeout.Duration)}, {"auth_max_failures", int64(l.AuthMaxFailures)},
		{"auth_failure_delay", int64(l.AuthFailureDelay.Duration)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			bad("limits.%s: must be greater than zero", p.name)
		}
	}
	r := c.Relay
	for _, p := range []struct {
		name string
		v    int64
	}{
		{"lifetime", int64(r.Lifetime.Duration)}, {"retry_delay", int64(r.RetryDelay.Duration)},
		{"max_concurrent", int64(r.MaxConcurrent)}, {"per_domain", int64(r.PerDomain)},
	} {
		if p.v <= 0 {
			bad("relay.%s: must be greater than zero", p.name)
		}
	}
	if r.DelayWarning.Duration < 0 {
		bad("relay.delay_warning: must not be negative")
	}
	for _, n := range c.MsgAuth.TrustedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			bad("msgauth.trusted_networks: %q is not a network in CIDR form (e.g. \"192.0.2.0/24\")", n)
		}
	}
	if l.QuotaBytes < 0 {
		bad("limits.quota_bytes: must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format: %q is not text or json", c.Log.Format)
	}
	return errors.Join(errs...)
}

// Listener is one configured door.
type Listener struct {
	Name string // the key under [listen]
	Addr string
}

// Listeners lists the doors in a fixed order.
func (c *Config) Listeners() []Listener {
	l := c.Listen
	return []Listener{
		{"smtp", l.SMTP}, {"submission", l.Submission}, {"submissions", l.Submissions},
		{"imap", l.IMAP}, {"imaps", l.IMAPS}, {"pop3", l.POP3}, {"pop3s", l.POP3S}, {"http", l.HTTP},
		{"https", l.HTTPS},
	}
}
