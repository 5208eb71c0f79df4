package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAdminCatchAll(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	if _, err := e.del.Resolve(ctx, "nobody@example.test"); err == nil {
		t.Fatal("an unknown address resolves before any catch-all")
	}
	a := e.login(alice)
	set := func(domain, target, op string) (string, bool) {
		return a.flash("/admin/domain-catchall", url.Values{"domain": {domain}, "target": {target}, "op": {op}})
	}
	catchAll := func() string {
		d, err := e.st.GetDomain(ctx, testDomain)
		if err != nil {
			t.Fatal(err)
		}
		return d.CatchAll
	}
	if msg, isErr := set("Example.Test", " Bob@Example.TEST ", "set"); isErr || msg != "Mail to unknown addresses at example.test now goes to bob@example.test." {
		t.Fatalf("set: %q", msg)
	}
	if got := catchAll(); got != bob {
		t.Fatalf("catch-all = %q", got)
	}
	_, page := a.get("/admin")
	if !strings.Contains(page, `name="target" value="bob@example.test"`) || !strings.Contains(page, "Mail to unknown addresses goes to bob@example.test.") {
		t.Errorf("admin page does not show the catch-all")
	}
	e.put("nobody@example.test", "From: x@other.test\nSubject: caught\n\nbody\n")
	if got := e.messages(e.bob, "INBOX"); len(got) != 1 || got[0].Info.Envelope.Subject != "caught" {
		t.Fatalf("bob's INBOX = %+v", got)
	}

	for _, c := range []struct{ domain, target, op, want string }{
		{"example.test", "ghost@example.test", "set", "No account or alias ghost@example.test exists here; add it first."},
		{"example.test", "not an address", "set", "“not an address” is not a valid address."},
		{"example.test", "carol@elsewhere.test", "set", "relaying is off"},
		{"example.test", "", "set", "Enter the address"},
		{"nope.test", bob, "set", "The domain nope.test is not served here."},
		{"nope.test", "", "clear", "not served here"},
		{"bad domain!", bob, "set", "not a valid domain name"},
	} {
		if msg, isErr := set(c.domain, c.target, c.op); !isErr || !strings.Contains(msg, c.want) {
			t.Errorf("%s %s %q: %q, error %v; want %q", c.op, c.domain, c.target, msg, isErr, c.want)
		}
	}
	if got := catchAll(); got != bob {
		t.Errorf("a refused change left catch-all %q", got)
	}
	// An alias is a fine target.
	if err := e.srv.accounts.AddAlias(ctx, "team@example.test", []string{alice, bob}, false); err != nil {
		t.Fatal(err)
	}
	if msg, isErr := set(testDomain, "team@example.test", "set"); isErr {
		t.Errorf("alias target: %q", msg)
	}

	b := e.login(bob)
	if res := b.post("/admin/domain-catchall", url.Values{"domain": {testDomain}, "op": {"clear"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("non-admin clear: %s", res.Status)
	}
	if res := a.postForm("/admin/domain-catchall", url.Values{"domain": {testDomain}, "op": {"clear"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("clear without CSRF token: %s", res.Status)
	}
	if msg, isErr := set(testDomain, "team@example.test", "clear"); isErr || !strings.Contains(msg, "turned off") {
		t.Errorf("clear: %q", msg)
	}
	if got := catchAll(); got != "" {
		t.Errorf("catch-all after clear = %q", got)
	}
	if _, err := e.del.Resolve(ctx, "nobody@example.test"); err == nil {
		t.Errorf("an unknown address still resolves after clear")
	}
	if _, page := a.get("/admin"); !strings.Contains(page, "Mail to unknown addresses is refused.") {
		t.Errorf("admin page does not show the catch-all off")
	}

	// With relaying on, a remote target is accepted.
	r := newEnv(t, envOpts{relay: true})
	ra := r.login(alice)
	if msg, isErr := ra.flash("/admin/domain-catchall", url.Values{"domain": {testDomain}, "target": {"carol@elsewhere.test"}, "op": {"set"}}); isErr {
		t.Errorf("remote target with relaying on: %q", msg)
	}
}
