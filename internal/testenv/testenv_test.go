package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"testing"
	"time"
)

// handshake runs a TLS handshake between server and client over
// loopback TCP (buffered, unlike net.Pipe, so a side that fails midway
// cannot block the other).
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(c, server).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	err = tls.Client(c, client).Handshake()
	c.Close()
	<-done
	return err
}

func TestSelfSigned(t *testing.T) {
	srv, cert := SelfSigned(t, "imap.example.test")
	if cert.Subject.CommonName != "imap.example.test" || cert.IsCA {
		t.Errorf("subject %q, CA %v", cert.Subject.CommonName, cert.IsCA)
	}
	for _, name := range []string{"imap.example.test", "localhost", "127.0.0.1"} {
		if err := handshake(t, srv, ClientTLS(cert, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := handshake(t, srv, ClientTLS(cert, "other.example.test")); err == nil {
		t.Error("handshake for a name not in the certificate succeeded")
	}
	_, other := SelfSigned(t)
	if err := handshake(t, srv, ClientTLS(other, "localhost")); err == nil {
		t.Error("handshake trusting another certificate succeeded")
	}
}

func TestNewCACert(t *testing.T) {
	c, err := NewCACert("localhost", "mx.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.IsCA || c.Leaf.KeyUsage&x509.KeyUsageCertSign == 0 || c.Leaf.Subject.CommonName != "localhost" {
		t.Errorf("CA %v, key usage %v, subject %q", c.Leaf.IsCA, c.Leaf.KeyUsage, c.Leaf.Subject.CommonName)
	}
	if len(c.Leaf.DNSNames) != 2 {
		t.Errorf("DNS names %q, want localhost once and mx.example.org", c.Leaf.DNSNames)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{c}}
	if err := handshake(t, srv, ClientTLS(c.Leaf, "mx.example.org")); err != nil {
		t.Error(err)
	}
}

func TestCertFile(t *testing.T) {
	_, cert := SelfSigned(t)
	b, err := os.ReadFile(CertFile(t, cert))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || string(blk.Bytes) != string(cert.Raw) {
		t.Error("file does not hold the certificate in PEM")
	}
}

func TestStore(t *testing.T) {
	st, m := Store(t, Logger(t), "example.test")
	accts := Users(t, m, "alice@example.test", "bob@example.test")
	if len(accts) != 2 || accts[1].Address != "bob@example.test" {
		t.Fatalf("accounts %+v", accts)
	}
	if _, err := st.GetMailbox(context.Background(), accts[0].ID, "INBOX"); err != nil {
		t.Error(err)
	}
}

func TestLineConn(t *testing.T) {
	a, b := net.Pipe()
	srv := NewLineConn(t, a, 10*time.Second)
	cl := NewLineConn(t, b, 10*time.Second)
	go srv.Send("+OK hello")
	if got := cl.Expect("+OK"); got != "+OK hello" {
		t.Errorf("Expect = %q", got)
	}
	go cl.Send("QUIT")
	if got := srv.ReadLine(); got != "QUIT" {
		t.Errorf("ReadLine = %q", got)
	}
}
