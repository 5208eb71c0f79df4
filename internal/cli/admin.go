package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/store"
)

func cmdDomain(e *env, args []string) error {
	sub, rest, err := splitSub(args, "add", "list", "remove", "catchall")
	if err != nil {
		fmt.Fprint(e.stderr, "Usage:\n  tern domain add [--config FILE] DOMAIN\n  tern domain list [--config FILE]\n  tern domain remove [--config FILE] [--force] DOMAIN\n  tern domain catchall [--config FILE] DOMAIN ADDRESS|\"\"\n")
		return err
	}
	ctx := context.Background()
	switch sub {
	case "add":
		fs, path := flags(e, "domain add", "[--config FILE] DOMAIN", "Serve mail for DOMAIN (international names are stored in their xn-- form).")
		if err := parseN(fs, rest, 1); err != nil {
			return err
		}
		return withManager(*path, func(m *accounts.Manager, _ store.Store) error {
			if err := m.AddDomain(ctx, fs.Arg(0)); err != nil {
				return err
			}
			name, _ := accounts.NormalizeDomain(fs.Arg(0))
			fmt.Fprintf(e.stdout, "domain %s added\n", name)
			return nil
		})
	case "list":
		fs, path := flags(e, "domain list", "[--config FILE]", "List the domains served here.")
		if err := parseN(fs, rest, 0); err != nil {
			return err
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			ds, err := st.ListDomains(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DOMAIN\tCATCH-ALL\tCREATED")
			for _, d := range ds {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, orDash(d.CatchAll), d.Created.Format("2006-01-02"))
			}
			return tw.Flush()
		})
	case "remove":
		fs, path := flags(e, "domain remove", "[--config FILE] [--force] DOMAIN", "Stop serving DOMAIN. Refused while it has users or aliases, unless\n--force, which removes them and their mail too.")
		force := fs.Bool("force", false, "also remove the domain's users, aliases and their mail")
		if err := parseN(fs, rest, 1); err != nil {
			return err
		}
		return withManager(*path, func(m *accounts.Manager, _ store.Store) error {
			err := m.RemoveDomain(ctx, fs.Arg(0), *force)
			if errors.Is(err, store.ErrInUse) {
				return fmt.Errorf("%w\n(the domain still has users or aliases; remove them first or use --force)", err)
			}
			if err == nil {
				fmt.Fprintf(e.stdout, "domain %s removed\n", fs.Arg(0))
			}
			return err
		})
	default: // catchall
		fs, path := flags(e, "domain catchall", "[--config FILE] DOMAIN ADDRESS|\"\"", "Deliver mail for unknown users of DOMAIN to ADDRESS; \"\" turns it off.")
		if err := parseN(fs, rest, 2); err != nil {
			return err
		}
		return withManager(*path, func(m *accounts.Manager, _ store.Store) error {
			return m.SetCatchAll(ctx, fs.Arg(0), fs.Arg(1))
		})
	}
}

func cmdUser(e *env, args []string) error {
	sub, rest, err := splitSub(args, "add", "list", "passwd", "quota", "remove")
	if err != nil {
		fmt.Fprint(e.stderr, "Usage:\n  tern user add [--config FILE] [--password-stdin] [--admin] [--quota BYTES] ADDRESS\n  tern user list [--config FILE] [DOMAIN]\n  tern user passwd [--config FILE] [--password-stdin] ADDRESS\n  tern user quota [--config FILE] ADDRESS BYTES\n  tern user remove [--config FILE] ADDRESS\n")
		return err
	}
	ctx := context.Background()
	switch sub {
	case "add":
		fs, path := flags(e, "user add", "[--config FILE] [--password-stdin] [--admin] [--quota BYTES] ADDRESS",
			"Create an account with INBOX, Sent, Drafts, Trash, Junk and Archive.\nThe password is asked for on the terminal, or read from the first line\nof standard input with --password-stdin; never give it as an argument.")
		stdinPw := fs.Bool("password-stdin", false, "read the password from standard input")
		admin := fs.Bool("admin", false, "the account may administer the server")
		quota := fs.Int64("quota", -1, "quota in `BYTES` (0: none; default: limits.quota_bytes)")
		if err := parseN(fs, rest, 1); err != nil {
			return err
		}
		return withManager(*path, func(m *accounts.Manager, st store.Store) error {
			pw, err := readPassword(e, *stdinPw, true)
			if err != nil {
				return err
			}
			a, err := m.AddUser(ctx, fs.Arg(0), pw)
			if err != nil {
				return err
			}
			if *admin {
				if err := st.SetAdmin(ctx, a.ID, true); err != nil {
					return err
				}
			}
			q := *quota
			if q < 0 {
				cfg, _, err := loadConfig(*path)
				if err != nil {
					return err
				}
				q = cfg.Limits.QuotaBytes
			}
			if q > 0 {
				if err := st.SetQuota(ctx, a.ID, q); err != nil {
					return err
				}
			}
			fmt.Fprintf(e.stdout, "user %s added\n", a.Address)
			return nil
		})
	case "list":
		fs, path := flags(e, "user list", "[--config FILE] [DOMAIN]", "List accounts, of one domain or all.")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() > 1 {
			return usagef("too many arguments")
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			as, err := st.ListAccounts(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tUSED\tQUOTA\tADMIN")
			for _, a := range as {
				q := "-"
				if a.QuotaBytes > 0 {
					q = humanBytes(a.QuotaBytes)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Address, humanBytes(a.UsedBytes), q, map[bool]string{true: "yes", false: ""}[a.Admin])
			}
			return tw.Flush()
		})
	case "passwd":
		fs, path := flags(e, "user passwd", "[--config FILE] [--password-stdin] ADDRESS", "Set an account's password.")
		stdinPw := fs.Bool("password-stdin", false, "read the password from standard input")
		if err := parseN(fs, rest, 1); err != nil {
			return err
		}
		return withManager(*path, func(m *accounts.Manager, _ store.Store) error {
			pw, err := readPassword(e, *stdinPw, true)
			if err != nil {
				return err
			}
			if err := m.SetPassword(ctx, fs.Arg(0), pw); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "password of %s changed\n", fs.Arg(0))
			return nil
		})
	case "quota":
		fs, path := flags(e, "user quota", "[--config FILE] ADDRESS BYTES", "Set an account's quota in bytes (0: no limit).")
		if err := parseN(fs, rest, 2); err != nil {
			return err
		}
		q, err := strconv.ParseInt(fs.Arg(1), 10, 64)
		if err != nil || q < 0 {
			return usagef("BYTES must be a whole number ≥ 0, not %q", fs.Arg(1))
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			a, err := lookupAccount(ctx, st, fs.Arg(0))
			if err != nil {
				return err
			}
			return st.SetQuota(ctx, a.ID, q)
		})
	default: // remove
		fs, path := flags(e, "user remove", "[--config FILE] ADDRESS", "Remove an account and all its mail.")
		if err := parseN(fs, rest, 1); err != nil {
			return err
		}
		return withManager(*path, func(m *accounts.Manager, _ store.Store) error {
			if err := m.RemoveUser(ctx, fs.Arg(0)); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "user %s removed\n", fs.Arg(0))
			return nil
		})
	}
}

func cmdAlias(e *env, args []string) error {
	sub, rest, err := splitSub(args, "add", "list", "remove")
	if err != nil {
		fmt.Fprint(e.stderr, "Usage:\n  tern alias add [--config FILE] [--send-as] ALIAS TARGET...\n  tern alias list [--config FILE] [DOMAIN]\n  tern alias remove [--config FILE] ALIAS\n")
		return err
	}
	ctx := context.Background()
	switch sub {
	case "add":
		fs, path := flags(e, "alias add", "[--config FILE] [--send-as] ALIAS TARGET...", "Deliver mail for ALIAS to every TARGET (local or remote addresses).")
		sendAs := fs.Bool("send-as", false, "local targets may also send mail as ALIAS")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() < 2 {
			return usagef("need an alias and at least one target")
		}
		return withManager(*path, func(m *accounts.Manager, _ store.Store) error {
			if err := m.AddAlias(ctx, fs.Arg(0), fs.Args()[1:], *sendAs); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "alias %s added\n", fs.Arg(0))
			return nil
		})
	case "list":
		fs, path := flags(e, "alias list", "[--config FILE] [DOMAIN]", "List aliases, of one domain or all.")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			as, err := st.ListAliases(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ALIAS\tTARGETS\tSEND-AS")
			for _, a := range as {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Address, strings.Join(a.Targets, ", "), map[bool]string{true: "yes", false: ""}[a.SendAs])
			}
			return tw.Flush()
		})
	default:
		fs, path := flags(e, "alias remove", "[--config FILE] ALIAS", "Remove an alias.")
		if err := parseN(fs, rest, 1); err != nil {
			return err
		}
		return withManager(*path, func(m *accounts.Manager, _ store.Store) error {
			if err := m.RemoveAlias(ctx, fs.Arg(0)); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "alias %s removed\n", fs.Arg(0))
			return nil
		})
	}
}

func cmdMailbox(e *env, args []string) error {
	sub, rest, err := splitSub(args, "list")
	if err != nil {
		fmt.Fprint(e.stderr, "Usage:\n  tern mailbox list [--config FILE] ADDRESS\n")
		return err
	}
	_ = sub
	fs, path := flags(e, "mailbox list", "[--config FILE] ADDRESS", "List an account's mailboxes with message counts and sizes.")
	if err := parseN(fs, rest, 1); err != nil {
		return err
	}
	ctx := context.Background()
	return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
		a, err := lookupAccount(ctx, st, fs.Arg(0))
		if err != nil {
			return err
		}
		mbs, err := st.ListMailboxes(ctx, a.ID)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MAILBOX\tSPECIAL-USE\tMESSAGES\tUNSEEN\tSIZE")
		for _, mb := range mbs {
			s, err := st.MailboxStatus(ctx, mb.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", mb.Name, orDash(mb.SpecialUse), s.Messages, s.Unseen, humanBytes(s.Size))
		}
		return tw.Flush()
	})
}

func lookupAccount(ctx context.Context, st store.Store, address string) (store.Account, error) {
	addr, err := accounts.NormalizeAddress(address)
	if err != nil {
		return store.Account{}, err
	}
	a, err := st.GetAccount(ctx, addr)
	if errors.Is(err, store.ErrNotFound) {
		return a, fmt.Errorf("no account %s", addr)
	}
	return a, err
}

func withManager(path string, f func(*accounts.Manager, store.Store) error) error {
	st, _, err := openStore(path)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(accounts.NewManager(st), st)
}

// parseN parses flags and requires exactly n positional arguments.
func parseN(fs interface {
	Parse([]string) error
	NArg() int
}, args []string, n int) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != n {
		return usagef("expected %d argument(s), got %d", n, fs.NArg())
	}
	return nil
}

// readPassword reads a password from the first line of stdin, or asks for
// it twice on the terminal without echo.
func readPassword(e *env, fromStdin, confirm bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("read password from standard input: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("empty password on standard input")
		}
		return pw, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("standard input is not a terminal: use --password-stdin")
	}
	fmt.Fprint(e.stderr, "Password: ")
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	if confirm {
		fmt.Fprint(e.stderr, "Again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", err
		}
		if string(again) != string(pw) {
			return "", errors.New("the passwords differ")
		}
	}
	if len(pw) == 0 {
		return "", errors.New("empty password")
	}
	return string(pw), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
