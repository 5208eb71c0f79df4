package storetest

import (
	"slices"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

func testDomains(t *testing.T, st store.Store) {
	c := ctx(t)
	must(t, st.AddDomain(c, "example.com"), "AddDomain")
	wantErr(t, st.AddDomain(c, "example.com"), store.ErrExists, "AddDomain twice")
	must(t, st.AddDomain(c, "example.net"), "AddDomain")
	d, err := st.GetDomain(c, "example.com")
	must(t, err, "GetDomain")
	if d.Name != "example.com" || d.Created.IsZero() {
		t.Errorf("GetDomain = %+v", d)
	}
	_, err = st.GetDomain(c, "nope.example")
	wantErr(t, err, store.ErrNotFound, "GetDomain missing")
	ds, err := st.ListDomains(c)
	must(t, err, "ListDomains")
	if len(ds) != 2 {
		t.Errorf("ListDomains = %d domains, want 2", len(ds))
	}
	must(t, st.SetCatchAll(c, "example.com", "postmaster@example.com"), "SetCatchAll")
	if d, _ := st.GetDomain(c, "example.com"); d.CatchAll != "postmaster@example.com" {
		t.Errorf("CatchAll = %q", d.CatchAll)
	}
	wantErr(t, st.SetCatchAll(c, "nope.example", "x@y"), store.ErrNotFound, "SetCatchAll missing domain")

	a := newAccount(t, st, "user@example.com")
	deliver(t, st, a.ID, "INBOX", message(1))
	must(t, st.AddAlias(c, store.Alias{Address: "al@example.net", Targets: []string{"user@example.com"}}), "AddAlias")
	wantErr(t, st.RemoveDomain(c, "example.com", false), store.ErrInUse, "RemoveDomain with account")
	wantErr(t, st.RemoveDomain(c, "example.net", false), store.ErrInUse, "RemoveDomain with alias")
	must(t, st.RemoveDomain(c, "example.com", true), "RemoveDomain force")
	_, err = st.GetAccount(c, "user@example.com")
	wantErr(t, err, store.ErrNotFound, "account after forced domain removal")
	must(t, st.RemoveDomain(c, "example.net", true), "RemoveDomain force alias domain")
	_, err = st.GetAlias(c, "al@example.net")
	wantErr(t, err, store.ErrNotFound, "alias after forced domain removal")
	wantErr(t, st.RemoveDomain(c, "example.com", false), store.ErrNotFound, "RemoveDomain twice")
	must(t, st.AddDomain(c, "empty.example"), "AddDomain")
	must(t, st.RemoveDomain(c, "empty.example", false), "RemoveDomain empty")
}

func testAccounts(t *testing.T, st store.Store) {
	c := ctx(t)
	_, err := st.AddAccount(c, store.Account{Address: "x@nodomain.example"})
	wantErr(t, err, store.ErrNotFound, "AddAccount without domain")
	a := newAccount(t, st, "one@example.com")
	b := newAccount(t, st, "two@example.com")
	newAccount(t, st, "three@example.org")
	if a.ID == 0 || a.ID == b.ID || a.Created.IsZero() {
		t.Fatalf("AddAccount returned %+v, %+v", a, b)
	}
	_, err = st.AddAccount(c, store.Account{Address: "one@example.com"})
	wantErr(t, err, store.ErrExists, "AddAccount twice")

	got, err := st.GetAccount(c, "one@example.com")
	must(t, err, "GetAccount")
	if got.ID != a.ID || got.PasswordHash != "$argon2id$x" {
		t.Errorf("GetAccount = %+v", got)
	}
	got, err = st.GetAccountByID(c, b.ID)
	must(t, err, "GetAccountByID")
	if got.Address != "two@example.com" {
		t.Errorf("GetAccountByID = %+v", got)
	}
	_, err = st.GetAccount(c, "nobody@example.com")
	wantErr(t, err, store.ErrNotFound, "GetAccount missing")
	_, err = st.GetAccountByID(c, 1<<40)
	wantErr(t, err, store.ErrNotFound, "GetAccountByID missing")

	all, err := st.ListAccounts(c, "")
	must(t, err, "ListAccounts")
	com, err := st.ListAccounts(c, "example.com")
	must(t, err, "ListAccounts domain")
	if len(all) != 3 || len(com) != 2 {
		t.Errorf("ListAccounts: %d all, %d in example.com", len(all), len(com))
	}

	must(t, st.SetPassword(c, a.ID, "$argon2id$new", "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"), "SetPassword")
	must(t, st.SetQuota(c, a.ID, 12345), "SetQuota")
	must(t, st.SetAdmin(c, a.ID, true), "SetAdmin")
	got, _ = st.GetAccountByID(c, a.ID)
	if got.PasswordHash != "$argon2id$new" || got.QuotaBytes != 12345 || !got.Admin {
		t.Errorf("after updates: %+v", got)
	}
	wantErr(t, st.SetPassword(c, 1<<40, "x", ""), store.ErrNotFound, "SetPassword missing")
	wantErr(t, st.SetQuota(c, 1<<40, 1), store.ErrNotFound, "SetQuota missing")

	deliver(t, st, a.ID, "INBOX", message(1))
	must(t, st.RemoveAccount(c, a.ID), "RemoveAccount")
	_, err = st.GetAccountByID(c, a.ID)
	wantErr(t, err, store.ErrNotFound, "account after removal")
	wantErr(t, st.RemoveAccount(c, a.ID), store.ErrNotFound, "RemoveAccount twice")
	mbs, err := st.ListMailboxes(c, a.ID)
	if err == nil && len(mbs) != 0 {
		t.Errorf("removed account still has %d mailboxes", len(mbs))
	}
}

// testSCRAM checks that an account's SCRAM keys round-trip, change with
// its password, and are filled in later only for the password they were
// derived from.
func testSCRAM(t *testing.T, st store.Store) {
	c := ctx(t)
	const (
		hash1, keys1 = "$argon2id$one", "SCRAM-SHA-256$4096:AQID$BAUG:BwgJ"
		hash2, keys2 = "$argon2id$two", "SCRAM-SHA-256$4096:CgsM$DQ4P:EBES"
		keys3        = "SCRAM-SHA-256$8192:ExQV$FhcY:GRob"
	)
	must(t, st.AddDomain(c, "example.com"), "AddDomain")
	a, err := st.AddAccount(c, store.Account{Address: "s@example.com", PasswordHash: hash1, SCRAM: keys1})
	must(t, err, "AddAccount")
	old := newAccount(t, st, "old@example.com") // as before SCRAM: no keys
	want := func(id int64, hash, keys, what string) {
		t.Helper()
		got, err := st.GetAccountByID(c, id)
		must(t, err, what)
		if got.PasswordHash != hash || got.SCRAM != keys {
			t.Fatalf("%s: hash %q, keys %q; want %q, %q", what, got.PasswordHash, got.SCRAM, hash, keys)
		}
	}
	want(a.ID, hash1, keys1, "after AddAccount")
	want(old.ID, "$argon2id$x", "", "account without keys")
	byAddr, err := st.GetAccount(c, "s@example.com")
	must(t, err, "GetAccount")
	list, err := st.ListAccounts(c, "example.com")
	must(t, err, "ListAccounts")
	if byAddr.SCRAM != keys1 || len(list) != 2 || list[1].SCRAM != keys1 {
		t.Fatalf("GetAccount / ListAccounts lose the keys: %+v, %+v", byAddr, list)
	}

	must(t, st.SetPassword(c, a.ID, hash2, keys2), "SetPassword")
	want(a.ID, hash2, keys2, "after SetPassword")
	// Keys made for the old password are not written over the new ones.
	wantErr(t, st.SetSCRAM(c, a.ID, hash1, keys3), store.ErrNotFound, "SetSCRAM with a stale hash")
	want(a.ID, hash2, keys2, "after a stale SetSCRAM")
	must(t, st.SetSCRAM(c, a.ID, hash2, keys3), "SetSCRAM")
	want(a.ID, hash2, keys3, "after SetSCRAM")
	// An account from before SCRAM gains keys; the other is untouched.
	must(t, st.SetSCRAM(c, old.ID, "$argon2id$x", keys1), "SetSCRAM on an old account")
	want(old.ID, "$argon2id$x", keys1, "old account after SetSCRAM")
	want(a.ID, hash2, keys3, "other account after SetSCRAM")
	// A new password without keys clears the old ones, which would still
	// accept the old password.
	must(t, st.SetPassword(c, a.ID, hash1, ""), "SetPassword without keys")
	want(a.ID, hash1, "", "after SetPassword without keys")
	wantErr(t, st.SetSCRAM(c, 1<<40, hash1, keys1), store.ErrNotFound, "SetSCRAM missing")
}

func testAliases(t *testing.T, st store.Store) {
	c := ctx(t)
	newAccount(t, st, "user@example.com")
	al := store.Alias{Address: "team@example.com", Targets: []string{"user@example.com", "far@remote.example"}, SendAs: true}
	must(t, st.AddAlias(c, al), "AddAlias")
	wantErr(t, st.AddAlias(c, al), store.ErrExists, "AddAlias twice")
	wantErr(t, st.AddAlias(c, store.Alias{Address: "user@example.com", Targets: []string{"x@y.example"}}), store.ErrExists, "alias over account")
	_, err := st.AddAccount(c, store.Account{Address: "team@example.com"})
	wantErr(t, err, store.ErrExists, "account over alias")
	got, err := st.GetAlias(c, "team@example.com")
	must(t, err, "GetAlias")
	if !slices.Equal(got.Targets, al.Targets) || !got.SendAs || got.Created.IsZero() {
		t.Errorf("GetAlias = %+v", got)
	}
	list, err := st.ListAliases(c, "example.com")
	must(t, err, "ListAliases")
	if len(list) != 1 {
		t.Errorf("ListAliases = %d", len(list))
	}
	must(t, st.RemoveAlias(c, "team@example.com"), "RemoveAlias")
	wantErr(t, st.RemoveAlias(c, "team@example.com"), store.ErrNotFound, "RemoveAlias twice")
	_, err = st.GetAlias(c, "team@example.com")
	wantErr(t, err, store.ErrNotFound, "GetAlias removed")
}

// IDs are never given again: a session still holding the ID of a removed
// account or mailbox must not reach a new one's data.
func testIDsNotReused(t *testing.T, st store.Store) {
	a := newAccount(t, st, "first@example.com")
	mb, err := st.CreateMailbox(ctx(t), a.ID, "Gone", "")
	must(t, err, "CreateMailbox")
	must(t, st.DeleteMailbox(ctx(t), a.ID, "Gone"), "DeleteMailbox")
	mb2, err := st.CreateMailbox(ctx(t), a.ID, "New", "")
	must(t, err, "CreateMailbox")
	if mb2.ID == mb.ID {
		t.Errorf("mailbox ID %d given again", mb.ID)
	}
	must(t, st.RemoveAccount(ctx(t), a.ID), "RemoveAccount")
	b := newAccount(t, st, "second@example.com")
	if b.ID == a.ID {
		t.Errorf("account ID %d given again", a.ID)
	}
}
