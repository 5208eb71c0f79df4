package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/storetest"
	"github.com/ternmail/tern/internal/testenv"
)

// Tests need a PostgreSQL database named by TERN_TEST_POSTGRES (a DSN,
// e.g. postgres://tern:tern@127.0.0.1:5432/tern_test?sslmode=disable).
// Each test gets a fresh schema of that database, selected by
// search_path and dropped when the test ends, so tests neither see each
// other nor need the right to create databases.

func testDSN(t testing.TB) string { return testenv.PostgresDSN(t) }

func newSchema(t testing.TB) string { return testenv.PostgresSchema(t) }

// schemaConfig is the pool configuration for a store in schema.
func schemaConfig(t testing.TB, schema string) *pgxpool.Config {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 8
	return cfg
}

// openSchema opens a store in schema, closed when the test ends; several
// stores on one schema are several nodes on one database.
func openSchema(t testing.TB, schema string) *Store {
	t.Helper()
	s, err := openConfig(context.Background(), schemaConfig(t, schema), nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTest(t testing.TB) *Store { return openSchema(t, newSchema(t)) }

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

func TestOpenBadDSN(t *testing.T) {
	_, err := Open(t.Context(), "postgres://u:secret@127.0.0.1:notaport/db", nil)
	if err == nil {
		t.Fatal("Open with a bad DSN succeeded")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows the password: %v", err)
	}
}

// TestOpenDSN opens through the public entry point, with the schema
// chosen in the DSN as docs/config.md tells operators to.
func TestOpenDSN(t *testing.T) {
	schema := newSchema(t)
	dsn := testDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	s, err := Open(t.Context(), dsn+sep+"search_path="+schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.schema != schema || s.channel != "tern_changes."+schema {
		t.Errorf("schema %q, channel %q", s.schema, s.channel)
	}
	setupAccount(t, s)
}

func TestNewerSchema(t *testing.T) {
	schema := newSchema(t)
	s := openSchema(t, schema)
	if _, err := s.pool.Exec(t.Context(), "UPDATE schema_version SET version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := openConfig(t.Context(), schemaConfig(t, schema), nil)
	if !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("Open of newer schema: %v", err)
	}
	if !strings.Contains(err.Error(), "999") {
		t.Errorf("error does not name the version: %v", err)
	}
}

// TestUpgradeFromSchema1 opens a schema made by a version before SCRAM
// keys: migration 2 adds them, empty, and the rows stay as they were.
func TestUpgradeFromSchema1(t *testing.T) {
	schema := newSchema(t)
	ctx := t.Context()
	pool, err := pgxpool.NewWithConfig(ctx, schemaConfig(t, schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		migrations[0],
		`CREATE TABLE schema_version (version integer NOT NULL)`,
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO domains (name, created) VALUES ('example.com', 1)`,
		`INSERT INTO accounts (address, domain, password_hash, created) VALUES ('old@example.com', 'example.com', '$argon2id$old', 1)`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			pool.Close()
			t.Fatal(err)
		}
	}
	pool.Close()
	s := openSchema(t, schema)
	a, err := s.GetAccount(ctx, "old@example.com")
	if err != nil || a.PasswordHash != "$argon2id$old" || a.SCRAM != "" {
		t.Fatalf("account after the upgrade: %+v, %v", a, err)
	}
	if err := s.SetSCRAM(ctx, a.ID, "$argon2id$old", "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("schema version %d, %v; want %d", v, err, schemaVersion)
	}
}

// TestConcurrentOpen starts several nodes at once on an empty schema:
// one applies the migrations, the others wait and find them done.
func TestConcurrentOpen(t *testing.T) {
	schema := newSchema(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := openConfig(t.Context(), schemaConfig(t, schema), nil)
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
}

func TestReopen(t *testing.T) {
	schema := newSchema(t)
	s := openSchema(t, schema)
	ctx := t.Context()
	account := setupAccount(t, s)
	big := strings.Repeat("0123456789abcdef", 100000) // past inlineMax: spooled to a file
	var blobIDs []string
	for _, body := range []string{"small body\r\n", big} {
		b, err := s.Spool(ctx, strings.NewReader(body), 10<<20)
		if err != nil {
			t.Fatal(err)
		}
		blobIDs = append(blobIDs, b.ID)
		if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: account, Mailbox: "INBOX"}}}); err != nil {
			t.Fatal(err)
		}
		if b.Path != "" {
			if _, err := os.Stat(b.Path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("spool file left after delivery: %v", err)
			}
		}
	}
	before, _ := s.GetMailbox(ctx, account, "INBOX")
	s.Close()
	b, err := s.Spool(ctx, strings.NewReader("late\r\n"), 1<<20)
	if err == nil {
		if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: []store.Target{{AccountID: account, Mailbox: "INBOX"}}}); err == nil {
			t.Error("Deliver after Close succeeded")
		}
	}

	s = openSchema(t, schema)
	after, err := s.GetMailbox(ctx, account, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("mailbox after reopen %+v, before %+v", after, before)
	}
	for i, id := range blobIDs {
		r, err := s.OpenBlob(ctx, id)
		if err != nil {
			t.Fatalf("OpenBlob after reopen: %v", err)
		}
		buf := make([]byte, r.Size())
		if _, err := r.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		if want := []string{"small body\r\n", big}[i]; string(buf) != want {
			t.Errorf("blob %d differs after reopen", i)
		}
		r.Close()
	}
	checkStore(t, s)
}

func setupAccount(t testing.TB, s *Store) int64 {
	t.Helper()
	ctx := context.Background()
	if err := s.AddDomain(ctx, "example.com"); err != nil && !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	a, err := s.AddAccount(ctx, store.Account{Address: fmt.Sprintf("u%d@example.com", rand.IntN(1e9))})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func checkStore(t testing.TB, s *Store) {
	t.Helper()
	problems, err := s.Check(context.Background())
	if err != nil || len(problems) > 0 {
		t.Fatalf("Check: %v %v", problems, err)
	}
}

// TestConcurrentMixed runs, on two nodes at once, deliveries of shared
// bodies to several accounts, copies, moves and expunges that touch the
// same bodies in different orders: the lock order must keep them free of
// deadlocks and the reference counts right.
func TestConcurrentMixed(t *testing.T) {
	schema := newSchema(t)
	nodes := []*Store{openSchema(t, schema), openSchema(t, schema)}
	ctx := t.Context()
	var accounts []int64
	for range 3 {
		accounts = append(accounts, setupAccount(t, nodes[0]))
	}
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := range 6 {
		wg.Go(func() {
			s := nodes[w%2]
			for i := range 25 {
				body := fmt.Sprintf("Subject: %d\r\n\r\nshared body %d\r\n", i%5, i%5)
				b, err := s.Spool(ctx, strings.NewReader(body), 1<<20)
				if err != nil {
					t.Error(err)
					return
				}
				// Targets in varying order.
				var local []store.Target
				for k := range accounts {
					local = append(local, store.Target{AccountID: accounts[(k+w)%len(accounts)], Mailbox: "INBOX"})
				}
				if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: local,
					Remote: []store.QueueRecipient{{Address: "x@remote.test"}}}); err != nil {
					t.Errorf("Deliver: %v", err)
					failures.Add(1)
					continue
				}
				acct := accounts[(w+i)%len(accounts)]
				inbox, err := s.GetMailbox(ctx, acct, "INBOX")
				if err != nil {
					t.Error(err)
					return
				}
				arch, _ := s.GetMailbox(ctx, acct, "Archive")
				ms, _ := s.ListMessages(ctx, inbox.ID)
				if len(ms) < 2 {
					continue
				}
				uids := []uint32{ms[0].UID, ms[len(ms)-1].UID}
				switch i % 3 {
				case 0:
					_, _, err = s.Copy(ctx, inbox.ID, uids, arch.ID)
				case 1:
					_, _, err = s.Move(ctx, inbox.ID, uids, arch.ID)
				case 2:
					_, err = s.Expunge(ctx, inbox.ID, uids)
				}
				if err != nil {
					t.Errorf("op %d: %v", i%3, err)
				}
			}
		})
	}
	// Garbage collection runs meanwhile, on bodies being expunged and
	// delivered again.
	stopGC := make(chan struct{})
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stopGC:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := nodes[1].CollectGarbage(ctx, 0); err != nil {
				t.Errorf("CollectGarbage: %v", err)
			}
		}
	}()
	wg.Wait()
	close(stopGC)
	<-gcDone
	checkStore(t, nodes[1])
	if q, _ := nodes[0].ListQueue(ctx); len(q)+int(failures.Load()) != 6*25 {
		t.Errorf("queue has %d entries, want %d", len(q), 6*25)
	}
}

// TestRedeliverSpooledBlob delivers one large spooled body twice: its
// spool file goes with the first commit, the second finds the stored
// body; once collected, a third delivery fails cleanly.
func TestRedeliverSpooledBlob(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	account := setupAccount(t, s)
	body := strings.Repeat("large body line\r\n", 100000)
	b, err := s.Spool(ctx, strings.NewReader(body), 10<<20)
	if err != nil || b.Path == "" {
		t.Fatalf("Spool: %+v %v", b, err)
	}
	to := []store.Target{{AccountID: account, Mailbox: "INBOX"}}
	for range 2 {
		if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: to}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(b.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file after delivery: %v", err)
	}
	mb, _ := s.GetMailbox(ctx, account, "INBOX")
	if _, err := s.Expunge(ctx, mb.ID, []uint32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CollectGarbage(ctx, 0); err != nil || n != 1 {
		t.Fatalf("CollectGarbage: %d %v", n, err)
	}
	if _, err := s.Deliver(ctx, &store.Delivery{Blob: b, Local: to}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delivery of a collected body: %v", err)
	}
	checkStore(t, s)
}
