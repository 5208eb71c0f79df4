package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/postgres"
	"github.com/ternmail/tern/internal/store/sqlite"
)

// openTimeout bounds connecting to PostgreSQL and migrating its schema
// at start, so a database that does not answer fails the start instead
// of hanging it.
const openTimeout = time.Minute

// OpenStore opens the store cfg names: [store] driver "sqlite" in the
// data directory, or "postgres" at [store] dsn. The daemon and the admin
// commands both open their store here, so they always agree on it.
func OpenStore(cfg config.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store.Driver {
	case config.DriverSQLite, "":
		st, err := sqlite.Open(cfg.DataDir, log)
		if err != nil {
			return nil, fmt.Errorf("open data directory %s: %w", cfg.DataDir, err)
		}
		return st, nil
	case config.DriverPostgres:
		ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
		defer cancel()
		st, err := postgres.Open(ctx, cfg.Store.DSN, log)
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL store: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("store.driver: %q is not %q or %q", cfg.Store.Driver, config.DriverSQLite, config.DriverPostgres)
}

// LockDataDir takes the lock tern serve holds on its data directory, for
// a command that must not run beside a server (tern migrate); the error
// wraps ErrRunning when one holds it.
func LockDataDir(dir string) (release func(), err error) {
	f, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// relayNode names this node's queue leases. On a shared PostgreSQL store
// every node must have its own name, the same across its restarts: the
// host name alone would let two nodes on one host take each other's live
// leases at start (relay.Config.Node), so the data directory is added.
// With SQLite, one node per data directory, the relay's default stands.
func relayNode(cfg config.Config) string {
	if cfg.Store.Driver != config.DriverPostgres {
		return ""
	}
	host, _ := os.Hostname()
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		dir = cfg.DataDir
	}
	return host + ":" + dir
}
