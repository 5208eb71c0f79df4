package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/storetest"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, t.TempDir()) })
}

func TestNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if _, err := s.wdb.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(dir, nil)
	if !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("Open of newer schema: %v", err)
	}
	if !strings.Contains(err.Error(), "999") || !strings.Contains(err.Error(), fmt.Sprintf("up to %d", schemaVersion)) {
		t.Errorf("error does not name both versions: %v", err)
	}
}

// TestUpgradeFromSchema1 opens a data directory made by a version before
// SCRAM keys: migration 2 adds them, empty, and the rows stay as they
// were.
func TestUpgradeFromSchema1(t *testing.T) {
	dir := t.TempDir()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "tern.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		migrations[0],
		`PRAGMA user_version = 1`,
		`INSERT INTO domains (name, created) VALUES ('example.com', 1)`,
		`INSERT INTO accounts (address, domain, password_hash, created) VALUES ('old@example.com', 'example.com', '$argon2id$old', 1)`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	s := openTest(t, dir)
	defer s.Close()
	ctx := t.Context()
	a, err := s.GetAccount(ctx, "old@example.com")
	if err != nil || a.PasswordHash != "$argon2id$old" || a.SCRAM != "" {
		t.Fatalf("account after the upgrade: %+v, %v", a, err)
	}
	if err := s.SetSCRAM(ctx, a.ID, "$argon2id$old", "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := s.wdb.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version %d, %v; want %d", v, err, schemaVersion)
	}
}

func TestNotADatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tern.db")
	junk := []byte(strings.Repeat("this is not a database\n", 100))
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "not an SQLite database") {
		t.Fatalf("Open of junk file: %v", err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != string(junk) {
		t.Error("junk file was modified")
	}
}

func TestUnusableDir(t *testing.T) {
	// A path below a regular file cannot be created, even by root.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "data"), nil); err == nil {
		t.Fatal("Open below a regular file succeeded")
	}
	if os.Geteuid() == 0 {
		return // root writes to read-only directories anyway
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	_, err := Open(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("Open of read-only directory: %v", err)
	}
}

func TestNewDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openTest(t, dir)
	defer s.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	if err := s.AddDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	a, err := s.AddAccount(ctx, store.Account{Address: "u@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 10000)
	var blobIDs []string
	for _, body := range []string{"small body\r\n", big} {
		b, err := s.Spool(ctx, strings.NewReader(body), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		blobIDs = append(blobIDs, b.ID)
		if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := s.Spool(ctx, strings.NewReader("late\r\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}}); err == nil {
		t.Error("Deliver after Close succeeded")
	}

	s = openTest(t, dir)
	defer s.Close()
	after, err := s.GetMailbox(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("mailbox after reopen %+v, before %+v", after, before)
	}
	ms, err := s.ListMessages(ctx, after.ID)
	if err != nil || len(ms) != 2 {
		t.Fatalf("ListMessages after reopen: %v, %v", ms, err)
	}
	for _, id := range blobIDs {
		r, err := s.OpenBlob(ctx, id)
		if err != nil {
			t.Fatalf("OpenBlob after reopen: %v", err)
		}
		r.Close()
	}
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("Check after reopen: %v %v", p, err)
	}
}

func setupAccount(t *testing.T, s *Store) int64 {
	t.Helper()
	ctx := t.Context()
	if err := s.AddDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	a, err := s.AddAccount(ctx, store.Account{Address: "u@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// TestTwoProcesses opens the data directory twice, as "tern serve" and an
// admin command do, and writes through both at once: busy_timeout and
// immediate transactions must serialise them without errors.
func TestTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	s1 := openTest(t, dir)
	defer s1.Close()
	s2 := openTest(t, dir)
	defer s2.Close()
	account := setupAccount(t, s1)
	var wg sync.WaitGroup
	for i, s := range []*Store{s1, s2} {
		wg.Go(func() {
			if err := deliverMany(t.Context(), s, account, 8, 100, 1000+i); err != nil {
				t.Errorf("store %d: %v", i, err)
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			if err := s2.AddDomain(t.Context(), fmt.Sprintf("d%d.example", i)); err != nil {
				t.Errorf("AddDomain: %v", err)
			}
		}
	})
	wg.Wait()
	mb, err := s2.GetMailbox(t.Context(), account, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s1.ListMessages(t.Context(), mb.ID)
	if err != nil || len(ms) != 200 {
		t.Errorf("ListMessages: %d messages, %v", len(ms), err)
	}
	if p, err := s1.Check(t.Context()); err != nil || len(p) != 0 {
		t.Errorf("Check: %v %v", p, err)
	}
}

// TestGarbageFiles covers the file side of CollectGarbage: spool leftovers
// and unreferenced blob files go once older than minAge, a file for a
// body delivered again after its collection is written anew.
func TestGarbageFiles(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	ctx := t.Context()
	account := setupAccount(t, s)
	body := strings.Repeat("large body line\r\n", inlineMax/17+1)
	b, err := s.Spool(ctx, strings.NewReader(body), 1<<20)
	if err != nil || b.Path == "" {
		t.Fatalf("Spool of a large body: %+v, %v", b, err)
	}
	stray := filepath.Join(dir, "blobs", "tmp", "spool-stray")
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Young files stay.
	if n, err := s.CollectGarbage(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("CollectGarbage(1h) = %d, %v", n, err)
	}
	if _, err := os.Stat(b.Path); err != nil {
		t.Fatalf("young spooled file removed: %v", err)
	}
	// Never delivered: an orphan, like the stray spool file.
	if n, err := s.CollectGarbage(ctx, 0); err != nil || n != 2 {
		t.Fatalf("CollectGarbage(0) = %d, %v; want 2", n, err)
	}
	for _, p := range []string{b.Path, stray} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	// Delivering a blob whose file went fails cleanly...
	if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: account, Mailbox: "INBOX"}}}); err == nil {
		t.Error("Deliver of a collected blob file succeeded")
	}
	// ...and spooling it again brings it back.
	b, err = s.Spool(ctx, strings.NewReader(body), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: account, Mailbox: "INBOX"}}}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("Check: %v %v", p, err)
	}
}
