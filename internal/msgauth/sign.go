package msgauth

import (
	"bufio"
	"bytes"
	"crypto"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/dkim"
)

// signedHeaders are the fields signed (RFC 6376 §5.4.1: those a reader
// sees and those that change meaning). From appears twice so that no
// second From can be added without breaking the signature (§8.15,
// "oversigning").
var signedHeaders = []string{
	"From", "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-Disposition", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Signer DKIM-signs outgoing mail with the keys of the From: domain kept
// in the data directory. It is safe for concurrent use.
type Signer struct {
	dataDir string
	now     func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKeys // by domain
}

type cachedKeys struct {
	mtime time.Time // of the domain's key folder when read
	keys  []Key     // those that sign: the newest of each algorithm
}

// NewSigner signs with the keys under dataDir/dkim.
func NewSigner(dataDir string) *Signer {
	return &Signer{dataDir: dataDir, now: time.Now, cache: map[string]cachedKeys{}}
}

// Sign reads the message in msg and returns the DKIM-Signature fields to
// prepend, one per algorithm (Ed25519 and RSA, RFC 8463 §5: both, since
// not every verifier knows Ed25519), or nil when the From: domain has no
// keys here. The signing domain is the From: domain, so that DKIM aligns
// for DMARC (RFC 7489 §3.1.1).
func (s *Signer) Sign(msg io.ReaderAt, size int64) ([]byte, error) {
	return s.SignReader(io.NewSectionReader(msg, 0, size))
}

// SignReader is Sign for a message that can be read only once, such as
// one converted as it is sent: only its header is held, while the keys
// are chosen.
func (s *Signer) SignReader(msg io.Reader) ([]byte, error) {
	var head bytes.Buffer
	domain, err := fromDomain(io.TeeReader(msg, &head))
	if err != nil || domain == "" {
		return nil, nil // nothing to sign for; the peer judges the message
	}
	keys, err := s.keys(domain)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	signers := make([]*dkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	for _, k := range keys {
		ds, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: k.Domain, Selector: k.Selector, Signer: k.Signer, Hash: crypto.SHA256,
			// relaxed/relaxed survives the rewrapping and whitespace
			// changes common on the way (RFC 6376 §3.4).
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             signedHeaders,
		})
		if err != nil {
			return nil, fmt.Errorf("dkim %s: %w", k.Selector, err)
		}
		signers = append(signers, ds)
		writers = append(writers, ds)
	}
	_, err = io.Copy(io.MultiWriter(writers...), io.MultiReader(&head, msg))
	var out bytes.Buffer
	for _, ds := range signers {
		if cerr := ds.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			out.WriteString(ds.Signature())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return out.Bytes(), nil
}

// keys returns the newest key of each algorithm for domain, re-reading
// the folder when it changed (a new key generated while serving).
func (s *Signer) keys(domain string) ([]Key, error) {
	dir := KeyDir(s.dataDir, domain)
	var mtime time.Time
	if st, err := os.Stat(dir); err == nil {
		mtime = st.ModTime()
	}
	s.mu.Lock()
	c, ok := s.cache[domain]
	s.mu.Unlock()
	if ok && c.mtime.Equal(mtime) {
		return c.keys, nil
	}
	all, err := LoadKeys(s.dataDir, domain)
	if err != nil {
		return nil, err
	}
	var keys []Key
	seen := map[string]bool{}
	for _, k := range all { // newest first
		if !seen[k.Alg] {
			seen[k.Alg] = true
			keys = append(keys, k)
		}
	}
	// Ed25519 first: a fixed order, and the short signature on top.
	slices.SortStableFunc(keys, func(a, b Key) int { return strings.Compare(a.Alg, b.Alg) })
	s.mu.Lock()
	s.cache[domain] = cachedKeys{mtime: mtime, keys: keys}
	s.mu.Unlock()
	return keys, nil
}

// fromDomain is the domain of the message's single From: address
// (RFC 7489 §6.6.1: DMARC is about that one), lower case, or "" when the
// header has none or several.
func fromDomain(r io.Reader) (string, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(r, maxHeader)))
	if err != nil {
		return "", err
	}
	return headerFromDomain(h), nil
}

// maxHeader bounds how much of a message is read to find its header.
const maxHeader = 1 << 20

func headerFromDomain(h textproto.Header) string {
	vals := h.Values("From")
	if len(vals) != 1 {
		return ""
	}
	list, err := mail.ParseAddressList(vals[0])
	if err != nil || len(list) != 1 {
		return ""
	}
	_, dom, ok := strings.Cut(list[0].Address, "@")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(dom), ".")
}
