package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACME configures certificates obtained from an ACME CA (RFC 8555), such
// as Let's Encrypt, and renewed before they expire.
type ACME struct {
	// DirectoryURL is the CA's directory (default Let's Encrypt's).
	DirectoryURL string
	// Email is given to the CA for expiry notices; may be empty.
	Email string
	// Hostname is the server's name: always allowed, and the name used
	// for clients that send no SNI (or a name not allowed: an address).
	Hostname string
	// Allowed reports whether a certificate may be requested for another
	// name (mta-sts.DOMAIN, autoconfig.DOMAIN of a domain served here).
	// Nil allows Hostname only.
	Allowed func(ctx context.Context, host string) bool
	// Dir keeps the account key and the certificates.
	Dir string
	// CAFile, when set, is a PEM file of extra roots trusted for the CA's
	// own HTTPS (a test CA such as pebble).
	CAFile string
}

// OpenACME returns a Manager whose certificates come from the CA, each
// obtained on the first handshake that needs it (see Prefetch).
//
// The CA checks we control a name with TLS-ALPN-01 on port 443: the
// HTTPS listener's configuration must offer the "acme-tls/1" protocol
// (ALPNConfig); or with HTTP-01 on port 80 through HTTPHandler.
func OpenACME(cfg ACME) (*Manager, error) {
	if cfg.Hostname == "" || cfg.Dir == "" {
		return nil, errors.New("acme: Hostname and Dir are required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	client := &acme.Client{DirectoryURL: cfg.DirectoryURL}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("acme: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme: %s holds no PEM certificate", cfg.CAFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: tr}
	}
	host := strings.ToLower(strings.TrimSuffix(cfg.Hostname, "."))
	allowed := func(ctx context.Context, name string) bool {
		return name == host || cfg.Allowed != nil && cfg.Allowed(ctx, name)
	}
	am := &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		Cache:  autocert.DirCache(cfg.Dir),
		Email:  cfg.Email,
		Client: client,
		HostPolicy: func(ctx context.Context, name string) error {
			if !allowed(ctx, name) {
				return fmt.Errorf("acme: no certificate for %q here", name)
			}
			return nil
		},
	}
	return &Manager{certFile: "ACME " + orDefault(cfg.DirectoryURL, autocert.DefaultACMEDirectory),
		acme: am, host: host, allowed: allowed}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// getACME picks the certificate for a handshake: the one for the name the
// client asked for when allowed, else the hostname's (a client without
// SNI, or connecting by address).
func (m *Manager) getACME(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	ctx := hello.Context()
	if !m.allowed(ctx, name) {
		h := *hello
		h.ServerName = m.host
		hello = &h
	}
	return m.acme.GetCertificate(hello)
}

// ALPNConfig returns cfg with the ACME TLS-ALPN-01 protocol added, for
// the listener the CA validates names on (HTTPS, 443). Without ACME it
// returns cfg. Other doors keep cfg: a mail client offering its own
// protocol in ALPN would find no common one in a list with only acme.
func (m *Manager) ALPNConfig(cfg *tls.Config) *tls.Config {
	if m.acme == nil {
		return cfg
	}
	c := cfg.Clone()
	c.NextProtos = append(c.NextProtos, "h2", "http/1.1", acme.ALPNProto)
	return c
}

// HTTPHandler answers ACME HTTP-01 challenges on port 80 and passes
// everything else to fallback (nil: a redirect to HTTPS). Without ACME it
// returns fallback.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if m.acme == nil {
		return fallback
	}
	return m.acme.HTTPHandler(fallback)
}

// Prefetch obtains the hostname's certificate now, rather than on the
// first handshake (which then waits for the CA).
func (m *Manager) Prefetch(ctx context.Context) error {
	if m.acme == nil {
		return nil
	}
	// A hello of a client that takes ECDSA, as today's all do: the
	// certificate prefetched is the one they will be given (autocert
	// keeps ECDSA and RSA certificates apart), and a client arriving
	// meanwhile waits for this request instead of starting a second
	// order for the same name.
	hello := &tls.ClientHelloInfo{
		ServerName:       m.host,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.acme.GetCertificate(hello)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
