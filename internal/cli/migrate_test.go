package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/store/postgres"
	"github.com/ternmail/tern/internal/testenv"
)

func TestMigrateToPostgres(t *testing.T) {
	dsn := testenv.PostgresSchemaDSN(t)
	dir := t.TempDir()
	for _, s := range [][]string{
		{"domain", "add", "example.com"},
		{"alias", "add", "team@example.com", "far@remote.example"},
	} {
		if code, _, errOut := run(t, dir, "", s...); code != 0 {
			t.Fatalf("%v: %s", s, errOut)
		}
	}
	if code, _, errOut := run(t, dir, "pw\n", "user", "add", "--password-stdin", "alice@example.com"); code != 0 {
		t.Fatal(errOut)
	}

	code, out, errOut := run(t, dir, "", "migrate", dsn)
	if code != 2 || !strings.Contains(errOut, "--to postgres") {
		t.Errorf("migrate without --to: %d %q", code, errOut)
	}
	code, out, errOut = run(t, dir, "", "migrate", "--to", "postgres", dsn)
	if code != 0 {
		t.Fatalf("migrate: %d %s", code, errOut)
	}
	if !strings.Contains(out, "accounts    1") || !strings.Contains(out, "mailboxes   6") || !strings.Contains(errOut, "100%") {
		t.Errorf("migrate output:\n%s\n%s", out, errOut)
	}
	st, err := postgres.Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if a, err := st.GetAccount(t.Context(), "alice@example.com"); err != nil || a.PasswordHash == "" {
		t.Errorf("account after migrate: %+v %v", a, err)
	}
	if al, err := st.GetAlias(t.Context(), "team@example.com"); err != nil || len(al.Targets) != 1 {
		t.Errorf("alias after migrate: %+v %v", al, err)
	}

	// Again: the database is no longer empty, nothing changes.
	code, _, errOut = run(t, dir, "", "migrate", "--to", "postgres", dsn)
	if code != 1 || !strings.Contains(errOut, "not empty") {
		t.Errorf("second migrate: %d %q", code, errOut)
	}
	// The data directory is left as it was.
	if _, err := os.Stat(filepath.Join(dir, "tern-data", "tern.db")); err != nil {
		t.Error(err)
	}
}
