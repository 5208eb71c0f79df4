// Package cli implements the tern command: subcommands, their flags and
// help, and the messages people read.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/store"
)

// env is what a subcommand runs with; tests give their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

type command struct {
	name, args, summary string
	run                 func(e *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "[--config FILE]", "run every configured listener until SIGTERM or SIGINT", cmdServe},
		{"domain", "add|list|remove|catchall ...", "manage the mail domains served here", cmdDomain},
		{"user", "add|list|passwd|quota|remove ...", "manage accounts", cmdUser},
		{"alias", "add|list|remove ...", "manage aliases (one address to many)", cmdAlias},
		{"mailbox", "list ADDRESS", "list an account's mailboxes with their counts", cmdMailbox},
		{"queue", "list|show|retry|remove|flush ...", "inspect and steer the outbound queue", cmdQueue},
		{"dkim", "generate|list DOMAIN", "make and list a domain's DKIM signing keys", cmdDKIM},
		{"dns", "records|check DOMAIN", "print the DNS records a domain needs, or check them", cmdDNS},
		{"config", "check [--config FILE]", "check a configuration file and print every problem", cmdConfig},
		{"check", "[--config FILE]", "verify the store's consistency", cmdCheck},
		{"gc", "[--config FILE]", "remove message bodies nothing refers to any more", cmdGC},
		{"migrate", "--to postgres DSN", "copy the SQLite store into PostgreSQL", cmdMigrate},
		{"import", "mbox|maildir ADDRESS PATH", "import an mbox file or a Maildir into an account", cmdImport},
		{"export", "ADDRESS DIR", "write an account's mail into DIR as a Maildir", cmdExport},
		{"version", "", "print the version", func(e *env, _ []string) error { fmt.Fprintln(e.stdout, "tern", Version); return nil }},
	}
}

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Main runs the tern command and returns the process exit status: 0 on
// success, 1 on failure, 2 on a usage error.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return Main([]string{args[1], "-h"}, stdin, stdout, stderr)
		}
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(e, args[1:])
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, new(usageError)):
				fmt.Fprintf(stderr, "tern %s: %v\nRun 'tern %s -h' for help.\n", c.name, err, c.name)
				return 2
			default:
				fmt.Fprintf(stderr, "tern %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "tern: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Tern is a complete mail server: SMTP, IMAP and POP3 on one store.\n\nUsage:\n\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  tern %-8s %-34s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprint(w, "\nEvery command takes --config FILE (default ./tern.toml; without it, the\nbuilt-in defaults with data in ./tern-data). 'tern COMMAND -h' tells more.\n")
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// flags returns a FlagSet for a subcommand with the common --config flag.
func flags(e *env, name, args, help string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg := fs.String("config", defaultConfigPath, "configuration `FILE`")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: tern %s %s\n\n%s\n\nFlags:\n", name, args, help)
		fs.PrintDefaults()
	}
	return fs, cfg
}

const defaultConfigPath = "tern.toml"

// loadConfig reads path; the default path may be missing, and then the
// built-in defaults apply (zero-config). It reports whether a file was read.
func loadConfig(path string) (config.Config, bool, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, os.ErrNotExist) && path == defaultConfigPath {
		cfg = config.Default()
		return cfg, false, nil
	}
	if err != nil {
		return cfg, false, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, true, fmt.Errorf("%s:\n%w", path, err)
	}
	return cfg, true, nil
}

// openStore opens the store of the configured data directory for an admin
// command; it may run while tern serve runs on the same directory.
func openStore(path string) (store.Store, config.Config, error) {
	cfg, _, err := loadConfig(path)
	if err != nil {
		return nil, cfg, err
	}
	st, err := daemon.OpenStore(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, cfg, err
	}
	return st, cfg, nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level)) // validated already
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdConfig(e *env, args []string) error {
	fs, path := flags(e, "config", "check [--config FILE]", "Check a configuration file: unknown keys, bad values, every problem at once.")
	if len(args) == 0 || args[0] != "check" {
		fs.Usage()
		return usagef("expected 'check'")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	_, found, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if !found {
		fmt.Fprintf(e.stdout, "%s not found: the built-in defaults apply and are valid\n", *path)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s: OK\n", *path)
	return nil
}

func cmdCheck(e *env, args []string) error {
	fs, path := flags(e, "check", "[--config FILE]", "Verify the store: UIDs ascending and unique, counts, blob references\nand reference counts, the database's own integrity.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, _, err := openStore(*path)
	if err != nil {
		return err
	}
	defer st.Close()
	problems, err := st.Check(context.Background())
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(e.stdout, p)
		}
		return fmt.Errorf("%d problem(s) found", len(problems))
	}
	fmt.Fprintln(e.stdout, "store OK")
	return nil
}

func cmdGC(e *env, args []string) error {
	fs, path := flags(e, "gc", "[--config FILE]", "Remove message bodies that no mailbox or queued message refers to any more,\nand spool files left by deliveries that never completed (older than an hour).\ntern serve does this by itself every ten minutes.")
	if err := parseN(fs, args, 0); err != nil {
		return err
	}
	st, _, err := openStore(*path)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.CollectGarbage(context.Background(), time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d unreferenced bodies removed\n", n)
	return nil
}

// splitSub takes the sub-subcommand ("add", "list", ...) off args.
func splitSub(args []string, valid ...string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, usagef("expected one of: %s", strings.Join(valid, ", "))
	}
	for _, v := range valid {
		if args[0] == v {
			return v, args[1:], nil
		}
	}
	if args[0] == "-h" || args[0] == "--help" {
		return "", nil, flag.ErrHelp
	}
	return "", nil, usagef("unknown subcommand %q (expected one of: %s)", args[0], strings.Join(valid, ", "))
}
