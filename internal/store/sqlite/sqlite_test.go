package sqlite

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if !strings.Contains(err.Error(), "999") || !strings.Contains(err.Error(), "1") {
		t.Errorf("error does not name both versions: %v", err)
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
