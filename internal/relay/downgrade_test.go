package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/msgauth"
)

// sevenBitPeer is an MTA of the old school: its EHLO announces neither
// 8BITMIME nor anything else, which go-smtp's server cannot be made to
// do. It keeps what each DATA carried, byte for byte.
type sevenBitPeer struct {
	addr string
	mu   sync.Mutex
	mail []string // the MAIL commands
	data []string
}

func startSevenBitPeer(t *testing.T) *sevenBitPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &sevenBitPeer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

func (p *sevenBitPeer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	say("220 old.test ESMTP")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(l))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			say("250-old.test\r\n250 SIZE 10000000")
		case strings.HasPrefix(cmd, "MAIL"):
			p.mu.Lock()
			p.mail = append(p.mail, strings.TrimSpace(l))
			p.mu.Unlock()
			say("250 2.1.0 ok")
		case strings.HasPrefix(cmd, "RCPT"), cmd == "RSET", cmd == "NOOP":
			say("250 2.0.0 ok")
		case cmd == "DATA":
			say("354 go on")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, ".")) // RFC 5321 §4.5.2
			}
			p.mu.Lock()
			p.data = append(p.data, b.String())
			p.mu.Unlock()
			say("250 2.0.0 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("500 5.5.1 what")
		}
	}
}

func (p *sevenBitPeer) received() ([]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.mail...), append([]string(nil), p.data...)
}

// signing gives the harness a DKIM signer for here.test and returns a
// verifier of what the peer got.
func signing(t *testing.T) (func(*Deps), func(t *testing.T, data string)) {
	t.Helper()
	dir := t.TempDir()
	keys, err := msgauth.GenerateKeys(dir, "here.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	txt := map[string]string{}
	for _, k := range keys {
		txt[k.DNSName()] = k.Record()
	}
	mod := func(d *Deps) { d.Signer = msgauth.NewSigner(dir) }
	verify := func(t *testing.T, data string) {
		t.Helper()
		vs, err := dkim.VerifyWithOptions(strings.NewReader(data), &dkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) {
				if v, ok := txt[strings.TrimSuffix(name, ".")]; ok {
					return []string{v}, nil
				}
				return nil, fmt.Errorf("no TXT for %s", name)
			},
		})
		if err != nil || len(vs) != 2 {
			t.Fatalf("%d signatures, %v", len(vs), err)
		}
		for _, v := range vs {
			if v.Err != nil || v.Domain != "here.test" {
				t.Errorf("signature of %s: %v", v.Domain, v.Err)
			}
		}
	}
	return mod, verify
}

// logTo sends the relay's log to buf.
func logTo(buf *syncBuffer) func(*Deps) {
	return func(d *Deps) { d.Log = slog.New(slog.NewTextHandler(buf, nil)) }
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// attachment holds every octet value, bare CR and LF among them.
var attachment = func() string {
	var b strings.Builder
	for i := range 1024 {
		b.WriteByte(byte(i*37 + i/256))
	}
	return b.String()
}()

const utf8Text = "Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln, \xe2\x82\xac 5.\r\nZweite Zeile.\r\n"

// eightBitMsg is what a client may send with BODY=8BITMIME (the
// attachment aside, which needs BINARYMIME).
func eightBitMsg(withBinary bool) string {
	m := "From: a@here.test\r\nTo: x@there.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + utf8Text
	if withBinary {
		m += "\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + attachment
	}
	return m + "\r\n--b--\r\n"
}

// bodies decodes the leaf parts of msg with go-message.
func bodies(t *testing.T, msg string) []string {
	t.Helper()
	e, err := message.Read(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("not multipart:\n%s", msg)
	}
	var out []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
}

// sevenBitClean fails unless data can travel on a 7-bit transport.
func sevenBitClean(t *testing.T, data string) {
	t.Helper()
	for i, l := range strings.Split(strings.TrimSuffix(data, "\r\n"), "\r\n") {
		if len(l) > 998 || strings.ContainsAny(l, "\x00\r\n") || strings.ContainsFunc(l, func(r rune) bool { return r >= 0x80 }) {
			t.Fatalf("line %d is not 7-bit: %.100q", i+1, l)
		}
	}
}

// A peer without 8BITMIME gets the message converted to 7 bit (RFC 6152
// §3), signed as converted, and it decodes to what was sent.
func TestDowngradeForSevenBitPeer(t *testing.T) {
	p := startSevenBitPeer(t)
	sign, verify := signing(t)
	var log syncBuffer
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{}, sign, logTo(&log))
	msg := eightBitMsg(true)
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "delivery", func() bool { return h.queueLen(t) == 0 })
	mail, data := p.received()
	if len(data) != 1 {
		t.Fatalf("peer got %d messages", len(data))
	}
	got := data[0]
	if strings.Contains(mail[0], "BODY=") || !strings.HasSuffix(mail[0], fmt.Sprintf(" SIZE=%d", len(got))) {
		t.Errorf("%s: BODY= to a peer without 8BITMIME, or SIZE not that of the %d octets sent", mail[0], len(got))
	}
	sevenBitClean(t, got)
	if b := bodies(t, got); len(b) != 2 || b[0] != utf8Text || b[1] != attachment {
		t.Errorf("decoded %q", b)
	}
	for _, want := range []string{"\r\nContent-Transfer-Encoding: quoted-printable\r\n", "\r\nContent-Transfer-Encoding: base64\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	verify(t, got)
	if j := h.journey(t, 1); !strings.Contains(j, "session mx.there.test: plaintext, converted to 7 bit") {
		t.Errorf("journey:\n%s", j)
	}
	if l := log.String(); !strings.Contains(l, `msg="converting to 7-bit MIME" queue=1 domain=there.test host=mx.there.test`) {
		t.Errorf("log:\n%s", l)
	}
}

// A peer with 8BITMIME gets an 8-bit message as stored, flagged; a
// binary one, which DATA cannot carry, it gets converted too.
func TestEightBitPeer(t *testing.T) {
	p := startPeer(t, false)
	sign, verify := signing(t)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{}, sign)
	msg := eightBitMsg(false)
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "delivery", func() bool { return len(p.messages()) == 1 })
	got := p.messages()[0]
	if got.bodyType != smtp.Body8BitMIME {
		t.Errorf("BODY=%q", got.bodyType)
	}
	if !strings.HasPrefix(got.body, "DKIM-Signature:") || !strings.HasSuffix(got.body, "\r\n"+msg) {
		t.Errorf("not the stored message:\n%q", got.body)
	}
	verify(t, got.body)

	h.queue(t, "a@here.test", eightBitMsg(true), "x@there.test")
	waitFor(t, "delivery", func() bool { return len(p.messages()) == 2 })
	got = p.messages()[1]
	sevenBitClean(t, got.body)
	if b := bodies(t, got.body); len(b) != 2 || b[0] != utf8Text || b[1] != attachment {
		t.Errorf("decoded %q", b)
	}
	verify(t, got.body)
}

// A message that needs converting and cannot be converted bounces with
// 5.6.3 rather than reach the peer 8-bit (RFC 6152 §3).
func TestDowngradeImpossibleBounces(t *testing.T) {
	p := startSevenBitPeer(t)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{})
	// A multipart without a single delimiter cannot be followed, and
	// may not be encoded whole (RFC 2045 §6.4).
	h.queue(t, "a@here.test", "From: a@here.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\nK\xc3\xb6ln\r\n", "x@there.test")
	waitFor(t, "bounce", func() bool { return h.queueLen(t) == 0 && len(h.bounces.list()) == 1 })
	if d := h.bounces.list()[0]; !strings.Contains(d, "Status: 5.6.3") || !strings.Contains(d, "mx.there.test needs the message in 7 bit") {
		t.Errorf("DSN:\n%s", d)
	}
	if _, data := p.received(); len(data) != 0 {
		t.Errorf("peer got %q", data)
	}
}

// A 7-bit message goes to a 7-bit peer as stored.
func TestSevenBitMessageUnchanged(t *testing.T) {
	p := startSevenBitPeer(t)
	h := newHarness(t, fakeDNS{"there.test": {host("mx.there.test", 1)}}, map[byte]string{1: p.addr}, Config{})
	h.queue(t, "a@here.test", msg, "x@there.test")
	waitFor(t, "delivery", func() bool { return h.queueLen(t) == 0 })
	if _, data := p.received(); len(data) != 1 || data[0] != msg {
		t.Errorf("peer got %q, want %q", data, msg)
	}
}
