package testenv

import (
	"context"
	"log/slog"
	"testing"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

// Password is the password of the accounts Users adds.
const Password = "correct horse battery staple"

// Store opens a SQLite store in a temporary directory, closed when the
// test ends, and adds the domains. log may be nil.
func Store(t testing.TB, log *slog.Logger, domains ...string) (*sqlite.Store, *accounts.Manager) {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := accounts.NewManager(st)
	for _, d := range domains {
		if err := m.AddDomain(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	return st, m
}

// Users adds an account with Password for each address, whose domain
// must exist, and returns them in order.
func Users(t testing.TB, m *accounts.Manager, addresses ...string) []store.Account {
	t.Helper()
	accts := make([]store.Account, len(addresses))
	for i, a := range addresses {
		var err error
		if accts[i], err = m.AddUser(context.Background(), a, Password); err != nil {
			t.Fatal(err)
		}
	}
	return accts
}
