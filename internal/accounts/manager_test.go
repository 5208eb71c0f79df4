package accounts

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

// setup returns a Manager over a new store serving example.org and
// bücher.example, with accounts alice and bob in example.org.
func setup(t *testing.T) (*Manager, store.Store) {
	t.Helper()
	st := newStore(t)
	m := NewManager(st)
	m.hash = cheapHash
	ctx := t.Context()
	for _, d := range []string{"Example.ORG", "bücher.example"} {
		if err := m.AddDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"Alice@example.org", "bob@example.org"} {
		if _, err := m.AddUser(ctx, u, "secret-"+u); err != nil {
			t.Fatal(err)
		}
	}
	return m, st
}

// wantErr fails unless err wraps target and its text contains each of
// says.
func wantErr(t *testing.T, what string, err, target error, says ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want one wrapping %v", what, err, target)
		return
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not say %q", what, err, s)
		}
	}
}

func TestDomains(t *testing.T) {
	m, st := setup(t)
	ctx := t.Context()
	if _, err := st.GetDomain(ctx, "xn--bcher-kva.example"); err != nil {
		t.Fatalf("IDN domain not stored as A-label: %v", err)
	}
	wantErr(t, "add twice", m.AddDomain(ctx, "EXAMPLE.org."), store.ErrExists, "example.org")
	wantErr(t, "add IP", m.AddDomain(ctx, "192.0.2.1"), ErrInvalidAddress, "IP")
	wantErr(t, "remove in use", m.RemoveDomain(ctx, "example.org", false), store.ErrInUse, "force")
	wantErr(t, "remove unknown", m.RemoveDomain(ctx, "nope.example", false), store.ErrNotFound)
	if err := m.RemoveDomain(ctx, "Bücher.Example", false); err != nil {
		t.Fatalf("remove empty IDN domain: %v", err)
	}
	if err := m.RemoveDomain(ctx, "example.org", true); err != nil {
		t.Fatalf("forced remove: %v", err)
	}
	if _, err := st.GetAccount(ctx, "alice@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("account survived forced domain removal: %v", err)
	}
}

// cheapHash is HashPassword with the smallest parameters, so tests that
// create many accounts stay fast (above all under -race). VerifyPassword
// reads the parameters from the string, so these verify as usual.
func cheapHash(pw string) (string, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	p := argonParams{time: 1, memory: 64, threads: 1}
	salt := []byte("0123456789abcdef")
	return p.format(salt, argon2IDKey(pw, salt, p, argonKeyLen)), nil
}

func TestAddUser(t *testing.T) {
	m, st := setup(t)
	m.hash = HashPassword // the real parameters, end to end
	ctx := t.Context()
	a, err := m.AddUser(ctx, "Jürgen@Bücher.Example", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if a.Address != "jürgen@xn--bcher-kva.example" || a.ID == 0 {
		t.Fatalf("AddUser returned %+v", a)
	}
	if got, err := st.GetAccount(ctx, a.Address); err != nil || !VerifyPassword(got.PasswordHash, "pw") {
		t.Fatalf("stored account %+v, %v: password does not verify", got, err)
	}
	if strings.Contains(a.PasswordHash, "pw") || !strings.HasPrefix(a.PasswordHash, "$argon2id$") {
		t.Fatalf("stored hash %q", a.PasswordHash)
	}
	if got, _ := st.GetAccount(ctx, a.Address); !scramMatches(t, got.SCRAM, "pw") {
		t.Fatalf("stored SCRAM keys %q are not those of the password", got.SCRAM)
	}

	_, err = m.AddUser(ctx, "ALICE@example.org", "x")
	wantErr(t, "same address other case", err, store.ErrExists)
	_, err = m.AddUser(ctx, "carol@other.example", "x")
	wantErr(t, "unknown domain", err, store.ErrNotFound, "other.example", "not served")
	_, err = m.AddUser(ctx, "carol@example.org", "")
	wantErr(t, "empty password", err, ErrInvalidPassword, "empty")
	_, err = m.AddUser(ctx, "carol@example.org", strings.Repeat("x", 1025))
	wantErr(t, "long password", err, ErrInvalidPassword, "1024")
	_, err = m.AddUser(ctx, `"carol"@example.org`, "x")
	wantErr(t, "quoted", err, ErrInvalidAddress, "quoted")
	_, err = m.AddUser(ctx, "carol+x@example.org", "x")
	wantErr(t, "plus", err, ErrInvalidAddress, "plus-addressing")
	if err := m.AddAlias(ctx, "team@example.org", []string{"alice@example.org"}, false); err != nil {
		t.Fatal(err)
	}
	_, err = m.AddUser(ctx, "Team@example.org", "x")
	wantErr(t, "alias address", err, store.ErrExists, "alias")
}

func TestSetPasswordAndRemoveUser(t *testing.T) {
	m, st := setup(t)
	ctx := t.Context()
	if err := m.SetPassword(ctx, "ALICE@example.org", "new one"); err != nil {
		t.Fatal(err)
	}
	a, err := st.GetAccount(ctx, "alice@example.org")
	if err != nil || !VerifyPassword(a.PasswordHash, "new one") || VerifyPassword(a.PasswordHash, "secret-Alice@example.org") {
		t.Fatalf("password not replaced: %v", err)
	}
	if !scramMatches(t, a.SCRAM, "new one") || scramMatches(t, a.SCRAM, "secret-Alice@example.org") {
		t.Fatalf("SCRAM keys %q not replaced with the password's", a.SCRAM)
	}
	wantErr(t, "set empty", m.SetPassword(ctx, "alice@example.org", ""), ErrInvalidPassword)
	wantErr(t, "set unknown", m.SetPassword(ctx, "nobody@example.org", "x"), store.ErrNotFound, "nobody@example.org")
	if err := m.RemoveUser(ctx, "Alice@Example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetAccount(ctx, "alice@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("account still there: %v", err)
	}
	wantErr(t, "remove twice", m.RemoveUser(ctx, "alice@example.org"), store.ErrNotFound)
}

func TestAddAlias(t *testing.T) {
	m, st := setup(t)
	ctx := t.Context()
	err := m.AddAlias(ctx, "Postmaster@Example.org",
		[]string{"ALICE@example.org", "alice@example.org", "Someone@Remote.example", "bob+box@example.org"}, true)
	if err != nil {
		t.Fatal(err)
	}
	al, err := st.GetAlias(ctx, "postmaster@example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alice@example.org", "someone@remote.example", "bob+box@example.org"}
	if !slices.Equal(al.Targets, want) || !al.SendAs {
		t.Fatalf("stored alias %+v, want targets %q with SendAs", al, want)
	}
	// Aliases may name other aliases.
	if err := m.AddAlias(ctx, "abuse@example.org", []string{"postmaster@example.org"}, false); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		what, addr string
		targets    []string
		target     error
		says       []string
	}{
		{"remote alias", "x@remote.example", []string{"alice@example.org"}, store.ErrNotFound, []string{"not served"}},
		{"account address", "BOB@example.org", []string{"alice@example.org"}, store.ErrExists, []string{"account"}},
		{"no targets", "x@example.org", nil, store.ErrInvalid, []string{"no targets"}},
		{"bad target", "x@example.org", []string{"not an address"}, ErrInvalidAddress, []string{"target"}},
		{"unknown local target", "x@example.org", []string{"carol@example.org"}, store.ErrNotFound, []string{"carol@example.org", "neither"}},
		{"itself", "x@example.org", []string{"alice@example.org", "X@example.org"}, store.ErrInvalid, []string{"itself"}},
		{"exists", "abuse@example.org", []string{"alice@example.org"}, store.ErrExists, nil},
		{"plus", "x+y@example.org", []string{"alice@example.org"}, ErrInvalidAddress, []string{"plus-addressing"}},
	}
	for _, tt := range tests {
		wantErr(t, tt.what, m.AddAlias(ctx, tt.addr, tt.targets, false), tt.target, tt.says...)
	}
}

func TestAddAliasLoops(t *testing.T) {
	m, st := setup(t)
	ctx := t.Context()
	// a → b → c → alice, built bottom up.
	for _, a := range [][2]string{{"c", "alice"}, {"b", "c"}, {"a", "b"}} {
		if err := m.AddAlias(ctx, a[0]+"@example.org", []string{a[1] + "@example.org"}, false); err != nil {
			t.Fatal(err)
		}
	}
	// Remove c and re-add it pointing to a: c → a → b → c.
	if err := m.RemoveAlias(ctx, "C@example.org"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "three-alias loop", m.AddAlias(ctx, "c@example.org", []string{"bob@example.org", "a@example.org"}, false),
		store.ErrInvalid, "loop", "c@example.org")
	// Reaching itself through a plus-addressed spelling is a loop too.
	wantErr(t, "tagged loop", m.AddAlias(ctx, "c@example.org", []string{"a+x@example.org"}, false),
		store.ErrInvalid, "loop")
	if _, err := st.GetAlias(ctx, "c@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused alias was stored: %v", err)
	}
	// Diamonds are not loops: d → {alice, e}, e → alice.
	if err := m.AddAlias(ctx, "e@example.org", []string{"alice@example.org"}, false); err != nil {
		t.Fatal(err)
	}
	if err := m.AddAlias(ctx, "d@example.org", []string{"alice@example.org", "e@example.org", "e+t@example.org"}, false); err != nil {
		t.Fatalf("diamond refused: %v", err)
	}
}

func TestAddAliasDepth(t *testing.T) {
	m, _ := setup(t)
	ctx := t.Context()
	// l1 → alice, l2 → l1, …, l10 → l9: l10 expands 10 aliases deep.
	prev := "alice@example.org"
	for i := 1; i <= 10; i++ {
		addr := "l" + string(rune('a'+i)) + "@example.org"
		if err := m.AddAlias(ctx, addr, []string{prev}, false); err != nil {
			t.Fatalf("alias %d deep: %v", i, err)
		}
		prev = addr
	}
	wantErr(t, "11 deep", m.AddAlias(ctx, "top@example.org", []string{prev}, false), store.ErrInvalid, "10 deep")
}

func TestRemoveAlias(t *testing.T) {
	m, _ := setup(t)
	ctx := t.Context()
	wantErr(t, "remove unknown", m.RemoveAlias(ctx, "x@example.org"), store.ErrNotFound, "x@example.org")
	wantErr(t, "remove invalid", m.RemoveAlias(ctx, "x"), ErrInvalidAddress)
}

func TestSetCatchAll(t *testing.T) {
	m, st := setup(t)
	ctx := t.Context()
	if err := m.SetCatchAll(ctx, "EXAMPLE.org", "Alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if d, _ := st.GetDomain(ctx, "example.org"); d.CatchAll != "alice@example.org" {
		t.Fatalf("catch-all %q", d.CatchAll)
	}
	if err := m.SetCatchAll(ctx, "bücher.example", "someone@remote.example"); err != nil {
		t.Fatalf("remote catch-all: %v", err)
	}
	wantErr(t, "unknown local target", m.SetCatchAll(ctx, "example.org", "carol@example.org"), store.ErrNotFound, "carol")
	wantErr(t, "unknown domain", m.SetCatchAll(ctx, "nope.example", "alice@example.org"), store.ErrNotFound, "nope.example")
	if err := m.SetCatchAll(ctx, "example.org", ""); err != nil {
		t.Fatal(err)
	}
	if d, _ := st.GetDomain(ctx, "example.org"); d.CatchAll != "" {
		t.Fatalf("catch-all not cleared: %q", d.CatchAll)
	}
}

func TestCanSendAs(t *testing.T) {
	m, st := setup(t)
	ctx := t.Context()
	alice, err := st.GetAccount(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		addr    string
		targets []string
		sendAs  bool
	}{
		{"team@example.org", []string{"alice@example.org", "bob@example.org"}, true},
		{"list@example.org", []string{"alice@example.org"}, false},
		{"bobs@example.org", []string{"bob@example.org"}, true},
		{"nested@example.org", []string{"team@example.org"}, true}, // alice only indirectly
	} {
		if err := m.AddAlias(ctx, a.addr, a.targets, a.sendAs); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"alice@example.org", true},
		{"ALICE@Example.Org", true},
		{"alice+news@example.org", true},
		{"team@example.org", true},
		{"Team+x@example.org", true},
		{"list@example.org", false}, // no SendAs
		{"bobs@example.org", false}, // not a target
		{"nested@example.org", false},
		{"bob@example.org", false},
		{"alice@remote.example", false},
		{"", false}, // null sender
	}
	for _, tt := range tests {
		got, err := CanSendAs(ctx, st, alice, tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("CanSendAs(alice, %q) = %v, %v; want %v", tt.addr, got, err, tt.want)
		}
	}
	if _, err := CanSendAs(ctx, st, alice, "not an address"); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("CanSendAs(invalid) error = %v, want ErrInvalidAddress", err)
	}
}
