package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// NewCert makes a self-signed certificate for localhost, 127.0.0.1 and
// hosts, the first of which (or localhost) is its subject.
func NewCert(hosts ...string) (tls.Certificate, error) { return newCert(false, hosts) }

// NewCACert is NewCert for a certificate that is its own CA as well,
// which some clients built on OpenSSL want of the trust anchor given to
// them in a file. Not for mbsync: it trusts a leaf given to it as it is,
// but checks the host name against a CA's.
func NewCACert(hosts ...string) (tls.Certificate, error) { return newCert(true, hosts) }

func newCert(ca bool, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	names := slices.Clone(hosts)
	if !slices.Contains(names, "localhost") {
		names = append(names, "localhost")
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: ca,
		IsCA:                  ca,
	}
	if ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// SelfSigned returns a server configuration with a fresh NewCert for
// hosts, and the certificate, for ClientTLS and CertFile.
func SelfSigned(t testing.TB, hosts ...string) (*tls.Config, *x509.Certificate) {
	t.Helper()
	c, err := NewCert(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}}, c.Leaf
}

// ClientTLS returns a client configuration that trusts cert alone and
// expects serverName.
func ClientTLS(cert *x509.Certificate, serverName string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, ServerName: serverName}
}

// CertFile writes cert in PEM to a file of a temporary directory, for
// outside clients, and returns its path.
func CertFile(t testing.TB, cert *x509.Certificate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
