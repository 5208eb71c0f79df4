package smtpd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestReceivedGolden(t *testing.T) {
	when := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	var b bytes.Buffer
	for _, ti := range []traceInfo{
		{Helo: "client.example", IP: netip.MustParseAddr("192.0.2.1"), Hostname: "mx.example.org", ID: "ID1", For: "alice@example.org", Time: when},
		{Helo: "evil)\r\nX-Injected: yes (", IP: netip.MustParseAddr("2001:db8::1"), Hostname: "mx.example.org", ID: "ID2", Time: when,
			TLS: &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}, Auth: true},
		{Helo: "", Hostname: "mx.example.org", ID: "ID3", UTF8: true, For: "jöran@example.org", Time: when},
	} {
		writeReceived(&b, ti)
	}
	golden := filepath.Join("testdata", "received.golden")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("Received fields differ from %s (run with -update):\n%s", golden, b.Bytes())
	}
	if strings.Contains(b.String(), "\r\nX-Injected") {
		t.Error("HELO text injected a header field")
	}
}

func TestReadHeader(t *testing.T) {
	for _, tc := range []struct {
		in, hdr  string
		complete bool
	}{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n\r\n", true},
		{"A: 1\r\n", "A: 1\r\n", true}, // no body
		{"\r\nbody\r\n", "\r\n", true},
		{"", "", true},
		{"A: " + strings.Repeat("x", 100) + "\r\n\r\nbody", "*", false}, // over limit: cut anywhere
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
		hdr, complete, err := readHeader(br, 64)
		if err != nil || tc.hdr != "*" && string(hdr) != tc.hdr || complete != tc.complete {
			t.Errorf("readHeader(%q) = %q, %v, %v; want %q, %v", tc.in, hdr, complete, err, tc.hdr, tc.complete)
		}
		rest, _ := io.ReadAll(br)
		if string(hdr)+string(rest) != tc.in {
			t.Errorf("readHeader(%q) lost bytes", tc.in)
		}
	}
}

func TestScanHeader(t *testing.T) {
	f := scanHeader([]byte("Received: a\r\n b\r\nRECEIVED : c\r\nX-Received: d\r\nmessage-id: <x>\r\n Date: no\r\n\r\n"))
	if f.received != 2 || !f.messageID || f.date {
		t.Errorf("got %+v", f)
	}
}

func TestLineChecker(t *testing.T) {
	for in, ok := range map[string]bool{
		"a\r\nb\r\n": true, "": true, "a": true,
		"a\nb": false, "a\rb": false, "a\r": false, "\n": false, "a\r\r\n": false,
	} {
		l := &lineChecker{r: strings.NewReader(in)}
		_, err := io.ReadAll(l)
		if (err == nil) != ok {
			t.Errorf("%q: err %v, want ok=%v", in, err, ok)
		}
		if err != nil && !errors.Is(err, replyBareLineEnding) {
			t.Errorf("%q: err %v", in, err)
		}
	}
}

// TestLineCheckerChunks compares the checker, fed in chunks of every
// size, with the rule it implements read byte by byte: no CR without an
// LF after it, no LF without a CR before it.
func TestLineCheckerChunks(t *testing.T) {
	valid := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n') || s[i] == '\n' && (i == 0 || s[i-1] != '\r') {
				return false
			}
		}
		return true
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := "ab\r\n"
	for range 5000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		in := string(b)
		for chunk := 1; chunk <= len(in)+1; chunk++ {
			l := &lineChecker{r: iotest.HalfReader(&chunkReader{s: in, n: chunk})}
			_, err := io.ReadAll(l)
			if (err == nil) != valid(in) {
				t.Fatalf("%q in chunks of %d: err %v, want valid=%v", in, chunk, err, valid(in))
			}
		}
	}
}

// chunkReader returns s n bytes at a time.
type chunkReader struct {
	s string
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[k:]
	return k, nil
}

func TestCheckRecipient(t *testing.T) {
	for addr, want := range map[string]error{
		"alice@example.org":            nil,
		"a%b@example.org":              replyRouting,
		"a!b@example.org":              replyRouting,
		"a@b@example.org":              replyQuotedAt,
		"a b@example.org":              replyQuotedAt,
		"a@[127.0.0.1]":                replyAddressLiteral,
		"jöran@example.org":            replyNeedUTF8,
		"al\xffice@example.org":        replyBadRecipient,
		"x\r\nRCPT TO:<y>@example.org": replyQuotedAt,
	} {
		got := checkRecipient(addr, false)
		if (got == nil) != (want == nil) || got != nil && error(got) != want {
			t.Errorf("checkRecipient(%q) = %v, want %v", addr, got, want)
		}
	}
	if r := checkRecipient("jöran@example.org", true); r != nil {
		t.Errorf("UTF-8 with SMTPUTF8: %v", r)
	}
}
