package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/certs"
)

// openCerts opens the certificate source [tls] names: files, a
// self-signed certificate, or an ACME CA.
func (d *Daemon) openCerts() (*certs.Manager, error) {
	cfg := d.cfg
	if !cfg.TLS.ACME {
		return certs.Open(cfg.TLS.Cert, cfg.TLS.Key, cfg.DataDir, cfg.Hostname)
	}
	return certs.OpenACME(certs.ACME{
		DirectoryURL: cfg.TLS.ACMEDirectory, Email: cfg.TLS.ACMEEmail, CAFile: cfg.TLS.ACMECA,
		Hostname: cfg.Hostname, Dir: filepath.Join(cfg.DataDir, "acme"),
		// The names "tern dns records" publishes for each domain served.
		Allowed: func(ctx context.Context, host string) bool {
			for _, p := range []string{"mta-sts.", "autoconfig.", "autodiscover."} {
				if dom, ok := strings.CutPrefix(host, p); ok {
					_, err := d.st.GetDomain(ctx, dom)
					return err == nil
				}
			}
			return false
		},
	})
}

// prefetchCert gets the hostname's certificate from the ACME CA in the
// background once the listeners are up, so the first client does not
// wait for it.
func (d *Daemon) prefetchCert() {
	if !d.cfg.TLS.ACME {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := d.certs.Prefetch(ctx); err != nil {
			d.log.Error("ACME certificate", "host", d.cfg.Hostname, "err", err)
		} else {
			d.log.Info("ACME certificate ready", "host", d.cfg.Hostname)
		}
	}()
}
