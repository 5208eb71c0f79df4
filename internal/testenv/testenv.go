// Package testenv is shared test scaffolding, imported only by tests.
//
// Tests that need an outside tool (a real mail client, PostgreSQL) find it
// with LookPath: on a developer's laptop a missing tool skips the test,
// under CI=true it fails it, so CI never passes by skipping. The doors'
// tests build their servers from the same parts: a self-signed
// certificate (tls.go), a temporary store with accounts (store.go) and a
// logger writing through the test (log.go).
//
// testenv imports the SQLite store and accounts, so their own tests
// cannot import it.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// LookPath returns the path of the named program, skipping the test when
// it is missing, or failing it under CI.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if InCI() {
			t.Fatalf("%s is required under CI=true but not installed: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}
