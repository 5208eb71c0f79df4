package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/store/postgres"
)

// migrateTables is the order the copy's counts are reported in.
var migrateTables = []string{"domains", "accounts", "aliases", "mailboxes", "messages", "tombstones", "blobs", "queue", "events"}

func cmdMigrate(e *env, args []string) error {
	fs, path := flags(e, "migrate", "--to postgres [--config FILE] DSN",
		"Copy the SQLite store in the configured data directory into an empty\n"+
			"PostgreSQL database, in one transaction: accounts, aliases, mailboxes,\n"+
			"messages and their bodies, the queue. UIDs, UIDVALIDITYs, flags and\n"+
			"MODSEQs stay the same, so IMAP clients do not download anything again.\n\n"+
			"Stop tern serve first. Afterwards, set [store] driver = \"postgres\" and\n"+
			"dsn in the configuration file and start it again. The data directory\n"+
			"is left as it was.")
	to := fs.String("to", "", "store `DRIVER` to copy into (only \"postgres\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to != config.DriverPostgres {
		return usagef("--to postgres is required")
	}
	if fs.NArg() != 1 {
		return usagef("want one DSN argument, the PostgreSQL database to copy into")
	}
	dsn := fs.Arg(0)
	cfg, _, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	release, err := daemon.LockDataDir(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("%w (stop it before migrating)", err)
	}
	defer release()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dst, err := postgres.Open(ctx, dsn, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer dst.Close()
	bar := newProgressBar(e.stderr)
	counts, err := dst.ImportSQLite(ctx, cfg.DataDir, func(p postgres.ImportProgress) {
		bar.update(p.Table, p.Done, p.Total)
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("%w; nothing was copied", err)
	}
	for _, t := range migrateTables {
		fmt.Fprintf(e.stdout, "%-11s %d\n", t, counts[t])
	}
	for t, n := range counts {
		if !slices.Contains(migrateTables, t) {
			fmt.Fprintf(e.stdout, "%-11s %d\n", t, n)
		}
	}
	fmt.Fprintf(e.stdout, "copied %s into PostgreSQL and checked the copy.\n"+
		"Next: in %s set\n\n[store]\ndriver = \"postgres\"\ndsn = \"...\"\n\nand start tern serve again.\n", cfg.DataDir, *path)
	return nil
}
