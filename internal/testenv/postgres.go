package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

// PostgresDSN is the database the PostgreSQL tests use, from
// TERN_TEST_POSTGRES. Without it the test is skipped, or fails under CI.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("TERN_TEST_POSTGRES")
	if dsn == "" {
		if InCI() {
			t.Fatal("TERN_TEST_POSTGRES is required under CI=true")
		}
		t.Skip("TERN_TEST_POSTGRES not set")
	}
	return dsn
}

var schemaSeq atomic.Int64

// PostgresSchema creates an empty schema in the test database, dropped
// when the test ends, and returns its name: tests neither see each other
// nor need the right to create databases.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	dsn := PostgresDSN(t)
	name := fmt.Sprintf("tern_test_%d_%d_%d", os.Getpid(), schemaSeq.Add(1), rand.IntN(1e6))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to TERN_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	return name
}

// PostgresSchemaDSN is a DSN for the test database that selects a fresh
// schema (PostgresSchema) with search_path.
func PostgresSchemaDSN(t testing.TB) string {
	t.Helper()
	schema := PostgresSchema(t)
	dsn := PostgresDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}
