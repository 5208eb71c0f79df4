package msgauth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DKIM keys live in the data directory, one folder per domain, one PEM
// file (PKCS #8, mode 0600) per selector:
//
//	DATA_DIR/dkim/example.com/tern-ed-20261126.pem
//	DATA_DIR/dkim/example.com/tern-rsa-20261126.pem
//
// The selector carries the algorithm and the day the key was made, so a
// new pair can be generated and published beside the old one and the old
// one removed once the new one is in DNS (RFC 6376 §3.1: selectors exist
// for rotation). Every key of a domain is published; the newest of each
// algorithm signs.

// Algorithms, as in the k= tag (RFC 6376 §3.6.1, RFC 8463).
const (
	AlgEd25519 = "ed25519"
	AlgRSA     = "rsa"
)

// rsaBits is RFC 8301 §3.2's "at least 2048 bits" (and larger keys do not
// fit a TXT record without splitting into several strings anyway).
const rsaBits = 2048

// ErrKeyExists means a key with that selector is already there.
var ErrKeyExists = errors.New("a DKIM key with this selector exists already")

// Key is one DKIM private key.
type Key struct {
	Domain   string
	Selector string
	Alg      string // AlgEd25519 or AlgRSA
	Signer   crypto.Signer
	Path     string
	Created  time.Time // the file's modification time
}

// DNSName is where the public key is published.
func (k Key) DNSName() string { return k.Selector + "._domainkey." + k.Domain }

// Record is the TXT record value publishing the public key (RFC 6376
// §3.6.1; Ed25519 keys are the raw 32 bytes, RFC 8463 §4.2).
func (k Key) Record() string {
	var p []byte
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		p = pub
	default:
		p, _ = x509.MarshalPKIXPublicKey(pub)
	}
	return "v=DKIM1; k=" + k.Alg + "; p=" + base64.StdEncoding.EncodeToString(p)
}

// KeyDir is the folder of domain's keys under dataDir.
func KeyDir(dataDir, domain string) string {
	return filepath.Join(dataDir, "dkim", strings.ToLower(domain))
}

// GenerateKeys makes a new Ed25519 and a new RSA-2048 key for domain,
// with selectors tern-ed-YYYYMMDD and tern-rsa-YYYYMMDD of now, and writes
// them durably. It refuses to replace existing files (ErrKeyExists).
func GenerateKeys(dataDir, domain string, now time.Time) ([]Key, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" || strings.ContainsAny(domain, "/\\ \t@") || strings.HasPrefix(domain, ".") {
		return nil, fmt.Errorf("dkim: %q is not a domain name", domain)
	}
	day := now.UTC().Format("20060102")
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, err
	}
	keys := []Key{
		{Domain: domain, Selector: "tern-ed-" + day, Alg: AlgEd25519, Signer: edPriv},
		{Domain: domain, Selector: "tern-rsa-" + day, Alg: AlgRSA, Signer: rsaPriv},
	}
	dir := KeyDir(dataDir, domain)
	for i := range keys {
		keys[i].Path = filepath.Join(dir, keys[i].Selector+".pem")
		if _, err := os.Stat(keys[i].Path); err == nil {
			return nil, fmt.Errorf("dkim: %s: %w", keys[i].Path, ErrKeyExists)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	for i, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
		if err != nil {
			return nil, err
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := writeDurably(k.Path, data, 0o600); err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
		keys[i].Created = now
	}
	return keys, nil
}

// LoadKeys reads every key of domain, newest first; none is not an
// error.
func LoadKeys(dataDir, domain string) ([]Key, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	dir := KeyDir(dataDir, domain)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	var keys []Key
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".pem") {
			continue
		}
		path := filepath.Join(dir, name)
		k, err := loadKey(path)
		if err != nil {
			return nil, fmt.Errorf("dkim: %s: %w", path, err)
		}
		k.Domain, k.Selector = domain, strings.TrimSuffix(name, ".pem")
		keys = append(keys, k)
	}
	// Newest first by the selector's date (file times do not survive
	// copies and restores), then by name: tern-ed before tern-rsa.
	slices.SortStableFunc(keys, func(a, b Key) int {
		if c := strings.Compare(selectorDate(b.Selector), selectorDate(a.Selector)); c != 0 {
			return c
		}
		return strings.Compare(a.Selector, b.Selector)
	})
	return keys, nil
}

// selectorDate is the trailing date of a selector Tern made, or "".
func selectorDate(sel string) string {
	i := strings.LastIndexByte(sel, '-')
	return sel[i+1:]
}

func loadKey(path string) (Key, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Key{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return Key{}, err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		return Key{}, errors.New("no PEM block")
	}
	priv, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return Key{}, err
	}
	k := Key{Path: path, Created: st.ModTime()}
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		k.Alg, k.Signer = AlgEd25519, p
	case *rsa.PrivateKey:
		k.Alg, k.Signer = AlgRSA, p
	default:
		return Key{}, fmt.Errorf("unsupported key type %T", priv)
	}
	return k, nil
}

// writeDurably writes a new file so that a crash leaves either nothing
// or the whole file: write a temporary file, fsync, rename, fsync the
// folder.
func writeDurably(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
