package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/dnsrecords"
	"github.com/ternmail/tern/internal/msgauth"
	"github.com/ternmail/tern/internal/mx"
)

// domainArgs parses the flags and the one DOMAIN argument that the dkim
// and dns subcommands share, and loads the configuration.
func domainArgs(e *env, name, help string, args []string) (config.Config, string, error) {
	fs, path := flags(e, name, "[--config FILE] DOMAIN", help)
	if err := parseN(fs, args, 1); err != nil {
		return config.Config{}, "", err
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		return cfg, "", err
	}
	domain, err := accounts.NormalizeDomain(fs.Arg(0))
	return cfg, domain, err
}

const dkimUsage = "Usage:\n  tern dkim generate [--config FILE] DOMAIN\n  tern dkim list [--config FILE] DOMAIN\n"

// cmdDKIM manages a domain's DKIM keys in the data directory. A running
// tern serve signs with new keys at once: publish them first.
func cmdDKIM(e *env, args []string) error {
	sub, rest, err := splitSub(args, "generate", "list")
	if err != nil {
		fmt.Fprint(e.stderr, dkimUsage)
		return err
	}
	help := map[string]string{
		"generate": "Make a new Ed25519 and RSA-2048 key pair for DOMAIN (selectors tern-ed-DATE\nand tern-rsa-DATE) in DATA_DIR/dkim/DOMAIN. Outgoing mail from DOMAIN is\nsigned with the newest key of each algorithm: publish the records that\n'tern dns records DOMAIN' prints before mail goes out.",
		"list":     "List DOMAIN's DKIM keys, newest first, with their DNS records.",
	}
	cfg, domain, err := domainArgs(e, "dkim "+sub, help[sub], rest)
	if err != nil {
		return err
	}
	var keys []msgauth.Key
	if sub == "generate" {
		keys, err = msgauth.GenerateKeys(cfg.DataDir, domain, time.Now())
		if errors.Is(err, msgauth.ErrKeyExists) {
			return fmt.Errorf("%w: keys were generated for %s today already", err, domain)
		}
	} else {
		keys, err = msgauth.LoadKeys(cfg.DataDir, domain)
	}
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintf(e.stdout, "no DKIM keys for %s; make them with: tern dkim generate %s\n", domain, domain)
		return nil
	}
	for _, k := range keys {
		rec := dnsrecords.Record{Name: k.DNSName(), Type: "TXT", Value: k.Record()}
		fmt.Fprintf(e.stdout, "%s %s %s\n%s\n", k.Selector, k.Alg, k.Path, rec.Zone())
	}
	if sub == "generate" {
		fmt.Fprintf(e.stdout, "publish these records (tern dns records %s prints them all)\n", domain)
	}
	return nil
}

const dnsUsage = "Usage:\n  tern dns records [--config FILE] DOMAIN\n  tern dns check [--config FILE] DOMAIN\n"

// cmdDNS prints and checks the records a domain needs.
func cmdDNS(e *env, args []string) error {
	sub, rest, err := splitSub(args, "records", "check")
	if err != nil {
		fmt.Fprint(e.stderr, dnsUsage)
		return err
	}
	help := map[string]string{
		"records": "Print, as a zone-file snippet, every DNS record DOMAIN needs: MX, SPF,\nDKIM (every selector), DMARC, MTA-STS, TLS-RPT, SRV records for mail\nclients (RFC 6186) and the autoconfig/autodiscover names.",
		"check":   "Look up each record DOMAIN needs through [dns] nameserver and say, record\nby record, what is missing or wrong and the exact fix. Exits 1 when\nanything is.",
	}
	cfg, domain, err := domainArgs(e, "dns "+sub, help[sub], rest)
	if err != nil {
		return err
	}
	keys, err := msgauth.LoadKeys(cfg.DataDir, domain)
	if err != nil {
		return err
	}
	setup := dnsrecords.Setup{Domain: domain, Hostname: cfg.Hostname, Keys: keys, Ports: listenPorts(cfg)}
	rs := dnsrecords.Records(setup)
	if sub == "records" {
		return dnsrecords.Zone(e.stdout, setup, rs)
	}
	res, err := mx.New(mx.Config{Nameserver: cfg.DNS.Nameserver, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	findings := append(dnsrecords.Check(ctx, res, cfg.Hostname, rs), dnsrecords.CheckHost(ctx, res, cfg.Hostname)...)
	problems := 0
	for _, f := range findings {
		r := f.Record
		fmt.Fprintf(e.stdout, "%-7s %-12s %s %s\n", f.Status, r.Kind, r.Name, r.Type)
		if f.Status == dnsrecords.OK {
			continue
		}
		problems++
		if f.Found != "" {
			fmt.Fprintf(e.stdout, "        found: %s\n", f.Found)
		}
		fmt.Fprintf(e.stdout, "        fix:   %s\n", f.Fix)
	}
	if len(keys) == 0 {
		problems++
		fmt.Fprintf(e.stdout, "missing DKIM         no key: run 'tern dkim generate %s', then publish its records\n", domain)
	}
	if problems > 0 {
		return fmt.Errorf("%d of %d records need attention", problems, len(findings))
	}
	fmt.Fprintf(e.stdout, "all %d records of %s are in place\n", len(findings), domain)
	return nil
}

// listenPorts are the ports of the configured client doors, for the SRV
// records; a disabled door is left out.
func listenPorts(cfg config.Config) dnsrecords.Ports {
	port := func(addr string) int {
		if addr == "" {
			return 0
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(p))
		return n
	}
	l := cfg.Listen
	return dnsrecords.Ports{
		Submission: port(l.Submission), Submissions: port(l.Submissions),
		IMAP: port(l.IMAP), IMAPS: port(l.IMAPS), POP3: port(l.POP3), POP3S: port(l.POP3S),
	}
}
