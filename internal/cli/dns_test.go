package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/dnsrecords"
	"github.com/ternmail/tern/internal/dnstest"
	"github.com/ternmail/tern/internal/msgauth"
)

// TestDNSCommands: keys made by "tern dkim generate" appear in "tern
// dns records"; "tern dns check" passes when everything is published and
// names the broken record, with its fix, when one is not.
func TestDNSCommands(t *testing.T) {
	dir := t.TempDir()
	srv := dnstest.Start(t, nil)
	conf := filepath.Join(dir, "tern.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`hostname = "mail.example.com"
data_dir = %q
[listen]
submission = ":587"
submissions = ":465"
imap = ""
imaps = ":993"
pop3 = ""
pop3s = ""
[dns]
nameserver = %q
`, filepath.Join(dir, "data"), srv.Addr())), 0o600)

	code, out, errOut := run(t, dir, "", "dns", "check", "--config", conf, "example.com")
	if code != 1 || !strings.Contains(out, "missing MX") || !strings.Contains(out, "tern dkim generate example.com") {
		t.Errorf("check of an empty zone: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, dir, "", "dkim", "generate", "--config", conf, "example.com")
	if code != 0 || !strings.Contains(out, "tern-ed-") || !strings.Contains(out, "tern-rsa-") {
		t.Fatalf("dkim generate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, dir, "", "dns", "records", "--config", conf, "example.com")
	for _, want := range []string{"example.com. 3600 IN MX 10 mail.example.com.", "._domainkey.example.com. 3600 IN TXT \"v=DKIM1; k=ed25519;",
		"k=rsa;", "_submission._tcp.example.com. 3600 IN SRV 0 1 587 mail.example.com.", "_imaps._tcp", "_smtp._tls.example.com."} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("dns records lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "_pop3") || strings.Contains(out, "_imap._tcp") {
		t.Errorf("dns records lists disabled doors:\n%s", out)
	}

	// Publish what it printed.
	keys, _ := msgauth.LoadKeys(filepath.Join(dir, "data"), "example.com")
	byName := map[string][]string{"mail.example.com": {"A 192.0.2.1"}, "1.2.0.192.in-addr.arpa": {"PTR mail.example.com."}}
	rs := dnsrecords.Records(dnsrecords.Setup{Domain: "example.com", Hostname: "mail.example.com", Keys: keys,
		Ports: dnsrecords.Ports{Submission: 587, Submissions: 465, IMAPS: 993}})
	for _, r := range rs {
		z := r.Zone()
		byName[r.Name] = append(byName[r.Name], z[strings.Index(z, " IN ")+4:])
	}
	for n, v := range byName {
		srv.Set(n, v...)
	}
	code, out, errOut = run(t, dir, "", "dns", "check", "--config", conf, "example.com")
	if code != 0 || !strings.Contains(out, "all 15 records of example.com are in place") {
		t.Errorf("check of a complete zone: exit %d\n%s%s", code, out, errOut)
	}

	// A deliberately broken record: the RSA key from an older setup.
	rsa := keys[1]
	srv.Set(rsa.DNSName(), `TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAold"`)
	code, out, errOut = run(t, dir, "", "dns", "check", "--config", conf, "example.com")
	wantFix := "fix:   the published key is not this server's; replace it with: " + rsa.DNSName() + ". 3600 IN TXT \"v=DKIM1; k=rsa; p="
	if code != 1 || !strings.Contains(out, "wrong   DKIM         "+rsa.DNSName()+" TXT") || !strings.Contains(out, wantFix) ||
		!strings.Contains(errOut, "1 of 15 records need attention") {
		t.Errorf("check with a broken DKIM record: exit %d\n%s%s", code, out, errOut)
	}
}
