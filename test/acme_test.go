package test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/dnstest"
	"github.com/ternmail/tern/internal/testenv"
)

// TestACMEWithPebble: Tern gets its certificate from pebble (an ACME
// test CA) on loopback, proving control of mail.acme.test with
// TLS-ALPN-01 on its HTTPS listener, and presents it on IMAPS (993) and
// SMTP submissions (465).
func TestACMEWithPebble(t *testing.T) {
	pebble := testenv.LookPath(t, "pebble")
	dir := t.TempDir()
	const ip = "127.0.0.6"
	dns := dnstest.Start(t, map[string][]string{"mail.acme.test": {"A " + ip}})

	// pebble's own HTTPS needs a certificate; the test is its CA.
	caFile, certFile, keyFile := writeTestCA(t, dir)
	wfe, mgmt, httpsPort := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), freePort(t, ip)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + wfe,
		"managementListenAddress":        "127.0.0.1:" + mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       5002,
		"tlsPort":                        atoi(t, httpsPort), // where Tern's https listens
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": map[string]any{"description": "default", "validityPeriod": 7776000}},
	}}
	raw, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(confFile, raw, 0o600)
	cmd := exec.Command(pebble, "-config", confFile, "-dnsserver", dns.Addr())
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	logf, _ := os.Create(filepath.Join(dir, "pebble.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(t, "127.0.0.1:"+wfe)
	waitListening(t, "127.0.0.1:"+mgmt)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "pebble.log"))
			t.Logf("pebble log:\n%s", b)
		}
	}()

	cfg := config.Default()
	cfg.Hostname = "mail.acme.test"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Listen = config.Listen{IMAPS: ip + ":0", Submissions: ip + ":0", HTTPS: ip + ":" + httpsPort}
	cfg.DNS.Nameserver = dns.Addr()
	cfg.TLS.ACME = true
	cfg.TLS.ACMEDirectory = "https://127.0.0.1:" + wfe + "/dir"
	cfg.TLS.ACMECA = caFile
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	d, err := daemon.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopDaemon(t, d) })

	// pebble's roots, to verify what Tern presents.
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(caFile)
	mgmtRoots := x509.NewCertPool()
	mgmtRoots.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: mgmtRoots}}}
	resp, err := hc.Get("https://127.0.0.1:" + mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble root: %s", root)
	}

	for _, door := range []struct{ name, greeting string }{{"imaps", "* OK"}, {"submissions", "220 "}} {
		addr := d.Addr(door.name).String()
		dl := &net.Dialer{Timeout: 5 * time.Second}
		var conn *tls.Conn
		// The first handshake may wait while the certificate is issued.
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			conn, err = tls.DialWithDialer(dl, "tcp", addr, &tls.Config{ServerName: "mail.acme.test", RootCAs: roots})
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s: no certificate from pebble: %v", door.name, err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		if !slices.Contains(leaf.DNSNames, "mail.acme.test") || !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
			t.Errorf("%s presents %v issued by %q", door.name, leaf.DNSNames, leaf.Issuer.CommonName)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, door.greeting) {
			t.Errorf("%s greeting %q, %v", door.name, line, err)
		}
		conn.Close()
	}
	// The certificate is kept for the next start (written in the
	// background once issued).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ents, _ := os.ReadDir(filepath.Join(cfg.DataDir, "acme"))
		if slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == "mail.acme.test" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate in %s: %v", filepath.Join(cfg.DataDir, "acme"), ents)
		}
	}
}

func stopDaemon(t *testing.T, d *daemon.Daemon) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func atoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// freePort returns a port free on ip now.
func freePort(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// writeTestCA makes a CA and a certificate for localhost and 127.0.0.1
// signed by it, and returns the files: CA, certificate, key.
func writeTestCA(t *testing.T, dir string) (string, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Tern test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	files := []string{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	os.WriteFile(files[0], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	os.WriteFile(files[1], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(files[2], pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return files[0], files[1], files[2]
}
