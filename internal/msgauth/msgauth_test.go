package msgauth

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/miekg/dns"

	"github.com/ternmail/tern/internal/dnstest"
	"github.com/ternmail/tern/internal/mx"
)

const testMsg = "From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hi\r\nDate: Thu, 26 Nov 2026 01:00:00 +0000\r\nMessage-ID: <1@a.test>\r\n\r\nHello  Bob\r\n\r\n"

// txt makes a zone-file TXT record, split in 255-byte strings.
func txt(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return "TXT " + strings.Join(append(parts, `"`+v+`"`), " ")
}

type world struct {
	dns     *dnstest.Server
	res     *mx.Resolver
	signer  *Signer
	checker *Checker
}

// newWorld publishes a.test (MX 127.0.0.2, SPF "mx -all", DKIM keys,
// DMARC dmarc) and returns a checker for b.test.
func newWorld(t *testing.T, dmarc string) *world {
	t.Helper()
	dir := t.TempDir()
	keys, err := GenerateKeys(dir, "a.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string][]string{
		"a.test":    {"MX 10 mx.a.test.", txt("v=spf1 mx -all")},
		"mx.a.test": {"A 127.0.0.2"},
	}
	if dmarc != "" {
		recs["_dmarc.a.test"] = []string{txt(dmarc)}
	}
	for _, k := range keys {
		recs[k.DNSName()] = []string{txt(k.Record())}
	}
	srv := dnstest.Start(t, recs)
	res, err := mx.New(mx.Config{Nameserver: srv.Addr(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &world{dns: srv, res: res, signer: NewSigner(dir),
		checker: NewChecker(Config{Hostname: "mx.b.test", DMARCReject: true}, res, nil)}
}

func (w *world) sign(t *testing.T, msg string) string {
	t.Helper()
	sigs, err := w.signer.Sign(strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	return string(sigs) + msg
}

func TestSignVerify(t *testing.T) {
	w := newWorld(t, "v=DMARC1; p=reject")
	signed := w.sign(t, testMsg)
	if n := strings.Count(signed, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d signatures:\n%s", n, signed)
	}
	env := Envelope{IP: netip.MustParseAddr("127.0.0.2"), Helo: "mx.a.test", MailFrom: "alice@a.test"}
	res, err := w.checker.Check(t.Context(), env, strings.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Accept || res.SPF != "pass" || res.DMARC != "pass" || len(res.DKIM) != 2 ||
		res.DKIM[0] != "pass" || res.DKIM[1] != "pass" {
		t.Fatalf("result %+v\n%s", res, res.Header)
	}
	for _, want := range []string{"Authentication-Results: mx.b.test;\r\n\tdkim=pass", "header.a=ed25519-sha256", "header.a=rsa-sha256",
		"header.s=tern-ed-", "spf=pass smtp.mailfrom=alice@a.test", "dmarc=pass header.from=a.test"} {
		if !strings.Contains(res.Header, want) {
			t.Errorf("header lacks %q:\n%s", want, res.Header)
		}
	}

	// A changed body breaks both signatures; SPF still aligns.
	tampered := strings.Replace(signed, "Hello", "Pay up", 1)
	res, err = w.checker.Check(t.Context(), env, strings.NewReader(tampered))
	if err != nil {
		t.Fatal(err)
	}
	if res.DKIM[0] != "fail" || res.DKIM[1] != "fail" || res.DMARC != "pass" {
		t.Errorf("tampered: %+v\n%s", res, res.Header)
	}
	// Another host, tampered: nothing aligns, p=reject rejects.
	env.IP = netip.MustParseAddr("127.0.0.9")
	res, _ = w.checker.Check(t.Context(), env, strings.NewReader(tampered))
	if res.SPF != "fail" || res.DMARC != "fail" || res.Action != Reject || res.Reason == "" {
		t.Errorf("forged: %+v\n%s", res, res.Header)
	}
}

// SignReader signs a message read once, as the relay signs one it
// converts while sending it; the signatures verify.
func TestSignReaderVerifies(t *testing.T) {
	w := newWorld(t, "v=DMARC1; p=reject")
	// A header larger than one read, so the header is not read whole at once.
	msg := strings.Replace(testMsg, "Subject: hi", "Subject: hi\r\nX-Pad: "+strings.Repeat("p", 9000), 1)
	sigs, err := w.signer.SignReader(io.MultiReader(strings.NewReader(msg)))
	if err != nil || strings.Count(string(sigs), "DKIM-Signature:") != 2 {
		t.Fatalf("SignReader: %q, %v", sigs, err)
	}
	env := Envelope{IP: netip.MustParseAddr("127.0.0.2"), Helo: "mx.a.test", MailFrom: "alice@a.test"}
	res, err := w.checker.Check(t.Context(), env, strings.NewReader(string(sigs)+msg))
	if err != nil || len(res.DKIM) != 2 || res.DKIM[0] != "pass" || res.DKIM[1] != "pass" {
		t.Fatalf("result %+v, %v", res, err)
	}
}

func TestSignNoKeys(t *testing.T) {
	s := NewSigner(t.TempDir())
	sigs, err := s.Sign(strings.NewReader(testMsg), int64(len(testMsg)))
	if err != nil || sigs != nil {
		t.Errorf("Sign without keys: %q, %v", sigs, err)
	}
}

func TestKeysFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	keys, err := GenerateKeys(dir, "Example.COM", now)
	if err != nil {
		t.Fatal(err)
	}
	if keys[0].Selector != "tern-ed-20261126" || keys[1].Selector != "tern-rsa-20261126" {
		t.Errorf("selectors %s %s", keys[0].Selector, keys[1].Selector)
	}
	for _, k := range keys {
		st, err := os.Stat(k.Path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", k.Path, st.Mode(), err)
		}
	}
	if !strings.HasPrefix(keys[0].Record(), "v=DKIM1; k=ed25519; p=") || !strings.HasPrefix(keys[1].Record(), "v=DKIM1; k=rsa; p=MIIB") {
		t.Errorf("records %q %q", keys[0].Record(), keys[1].Record())
	}
	if _, err := GenerateKeys(dir, "example.com", now); err == nil {
		t.Error("second generation the same day succeeded")
	}
	if _, err := GenerateKeys(dir, "example.com", now.AddDate(0, 1, 0)); err != nil {
		t.Fatal(err)
	}
	all, err := LoadKeys(dir, "example.com")
	if err != nil || len(all) != 4 {
		t.Fatalf("LoadKeys: %d keys, %v", len(all), err)
	}
	if all[0].Selector != "tern-ed-20261226" && all[0].Selector != "tern-rsa-20261226" {
		t.Errorf("newest first: %s", all[0].Selector)
	}
	signing, _ := NewSigner(dir).keys("example.com")
	if len(signing) != 2 || !strings.HasSuffix(signing[0].Selector, "20261226") || !strings.HasSuffix(signing[1].Selector, "20261226") {
		t.Errorf("signing keys %v", signing)
	}
}

func TestDMARCPolicies(t *testing.T) {
	other, mxA := netip.MustParseAddr("127.0.0.9"), netip.MustParseAddr("127.0.0.2")
	tests := []struct {
		name   string
		dmarc  string
		from   string // From: address
		ip     netip.Addr
		mfrom  string
		reject bool // Config.DMARCReject
		result string
		action Action
	}{
		{"none record", "", "alice@a.test", other, "alice@a.test", true, "none", Accept},
		{"p=none", "v=DMARC1; p=none", "alice@a.test", other, "alice@a.test", true, "fail", Accept},
		{"quarantine", "v=DMARC1; p=quarantine", "alice@a.test", other, "alice@a.test", true, "fail", Junk},
		{"reject", "v=DMARC1; p=reject", "alice@a.test", other, "alice@a.test", true, "fail", Reject},
		{"reject as junk", "v=DMARC1; p=reject", "alice@a.test", other, "alice@a.test", false, "fail", Junk},
		{"pct=0 softens", "v=DMARC1; p=reject; pct=0", "alice@a.test", other, "alice@a.test", true, "fail", Junk},
		// SPF passes for c.test, but From: is a.test: not aligned.
		{"spf unaligned", "v=DMARC1; p=reject", "alice@a.test", mxA, "x@c.test", true, "fail", Reject},
		// SPF passes for mx.a.test: aligned with a.test when relaxed only.
		{"spf relaxed", "v=DMARC1; p=reject", "alice@a.test", mxA, "x@mx.a.test", true, "pass", Accept},
		{"spf strict", "v=DMARC1; p=reject; aspf=s", "alice@a.test", mxA, "x@mx.a.test", true, "fail", Reject},
		// The org domain's record with sp= governs a subdomain.
		{"subdomain sp", "v=DMARC1; p=none; sp=reject", "x@sub.a.test", other, "x@sub.a.test", true, "fail", Reject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.dmarc)
			w.dns.Set("sub.a.test", "A 127.0.0.8")
			w.dns.Set("c.test", txt("v=spf1 ip4:127.0.0.2 -all"))
			w.dns.Set("mx.a.test", "A 127.0.0.2", txt("v=spf1 a -all"))
			w.checker.cfg.DMARCReject = tc.reject
			msg := strings.Replace(testMsg, "alice@a.test", tc.from, 1)
			res, err := w.checker.Check(t.Context(), Envelope{IP: tc.ip, Helo: "h.test", MailFrom: tc.mfrom}, strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if string(res.DMARC) != tc.result || res.Action != tc.action {
				t.Errorf("dmarc=%s action=%s, want %s %s\n%s", res.DMARC, res.Action, tc.result, tc.action, res.Header)
			}
		})
	}
}

func TestDNSFailureIsTempError(t *testing.T) {
	w := newWorld(t, "v=DMARC1; p=reject")
	w.dns.Fail("_dmarc.a.test", dns.RcodeServerFailure)
	w.dns.Fail("a.test", dns.RcodeServerFailure)
	res, err := w.checker.Check(t.Context(), Envelope{IP: netip.MustParseAddr("127.0.0.9"), Helo: "h", MailFrom: "alice@a.test"}, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if res.SPF != "temperror" || res.DMARC != "temperror" || res.Action != Accept {
		t.Errorf("%+v\n%s", res, res.Header)
	}
}

func TestAlignment(t *testing.T) {
	tests := []struct {
		auth, from string
		strict     bool
		want       bool
	}{
		{"a.test", "a.test", true, true},
		{"mail.a.test", "a.test", true, false},
		{"mail.a.test", "a.test", false, true},
		{"a.test", "b.test", false, false},
		{"example.co.uk", "mail.example.co.uk", false, true},
		{"other.co.uk", "example.co.uk", false, false},
		{"", "a.test", false, false},
	}
	for _, tc := range tests {
		mode := "r"
		if tc.strict {
			mode = "s"
		}
		if got := aligned(tc.auth, tc.from, dmarc.AlignmentMode(mode)); got != tc.want {
			t.Errorf("aligned(%q, %q, %s) = %v", tc.auth, tc.from, mode, got)
		}
	}
}

func TestStripForged(t *testing.T) {
	hdr := "Authentication-Results: mx.b.test; dkim=pass\r\n" +
		"Authentication-Results: (comment) MX.B.TEST. 1;\r\n spf=pass\r\n" +
		"Authentication-Results: mx.other.test; spf=pass\r\n" +
		"Authentication-Results: mx.b.test.evil; spf=pass\r\n" +
		"Subject: x\r\n\r\n"
	got := string(StripForged([]byte(hdr), "mx.b.test"))
	want := "Authentication-Results: mx.other.test; spf=pass\r\n" +
		"Authentication-Results: mx.b.test.evil; spf=pass\r\n" +
		"Subject: x\r\n\r\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	same := []byte("Subject: y\r\n\r\n")
	if out := StripForged(same, "mx.b.test"); !bytes.Equal(out, same) {
		t.Errorf("changed %q", out)
	}
}

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com": "example.com", "example.com": "example.com", "a.b.example.co.uk": "example.co.uk",
		"mx.a.test": "a.test", "com": "com",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
