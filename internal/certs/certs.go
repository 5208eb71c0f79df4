// Package certs provides the TLS configuration every door shares: a
// certificate and key from files, a self-signed certificate generated
// once and kept in the data directory, or certificates from an ACME CA
// (acme.go). Reload re-reads the files (SIGHUP)
// without dropping connections: new handshakes see the new certificate.
package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// Manager holds the current certificate.
type Manager struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]

	// With ACME (acme.go), certificates come from there instead.
	acme    *autocert.Manager
	host    string
	allowed func(ctx context.Context, host string) bool
}

// Open loads certFile and keyFile. When both are empty it uses
// dir/tls/cert.pem and key.pem, generating a self-signed certificate for
// hostname there on first use.
func Open(certFile, keyFile, dir, hostname string) (*Manager, error) {
	if certFile == "" && keyFile == "" {
		certFile = filepath.Join(dir, "tls", "cert.pem")
		keyFile = filepath.Join(dir, "tls", "key.pem")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := generate(certFile, keyFile, hostname); err != nil {
				return nil, fmt.Errorf("self-signed certificate: %w", err)
			}
		}
	}
	m := &Manager{certFile: certFile, keyFile: keyFile}
	if err := m.Reload(); err != nil {
		return nil, err
	}
	return m, nil
}

// Reload reads the certificate files again. On error the previous
// certificate stays in use.
func (m *Manager) Reload() error {
	if m.acme != nil {
		return nil // renewed by the ACME manager itself
	}
	c, err := tls.LoadX509KeyPair(m.certFile, m.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", m.certFile, err)
	}
	m.cur.Store(&c)
	return nil
}

// CertFile is the path of the certificate in use, for the banner.
func (m *Manager) CertFile() string { return m.certFile }

// TLSConfig returns a server configuration with modern defaults (TLS 1.2
// and later) that always presents the current certificate.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if m.acme != nil {
				return m.getACME(hello)
			}
			return m.cur.Load(), nil
		},
	}
}

func generate(certFile, keyFile, hostname string) error {
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"Tern self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{hostname},
	}
	if hostname != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
	}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile writes durably: a crash never leaves a half-written key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
