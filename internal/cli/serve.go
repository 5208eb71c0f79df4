package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/store"
)

// firstDomain and firstUser are created on a zero-config first start.
// .localhost names resolve to this machine (RFC 6761 §6.3) and can never
// be someone else's domain.
const (
	firstDomain = "tern.localhost"
	firstUser   = "admin@" + firstDomain
)

func cmdServe(e *env, args []string) error {
	fs, path := flags(e, "serve", "[--config FILE]",
		"Run every configured listener until SIGTERM or SIGINT, then let sessions\nfinish. SIGHUP reloads the TLS certificate.\n\nWithout a configuration file, a complete local instance starts: data in\n./tern-data, unprivileged ports on 127.0.0.1, a self-signed certificate,\nthe domain "+firstDomain+" and a first account whose password is\nprinted once.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, found, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg, e.stderr)
	d, err := daemon.Start(cfg, log)
	if err != nil {
		return err
	}
	var password string
	if !found {
		if password, err = bootstrap(d.Store()); err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d.Shutdown(ctx)
			return err
		}
	}
	banner(e, cfg, d, found, password)

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	for s := range sig {
		if s == syscall.SIGHUP {
			if err := d.Reload(); err != nil {
				log.Error("reload certificate", "err", err)
			} else {
				log.Info("certificate reloaded")
			}
			continue
		}
		log.Info("shutting down: finishing sessions (send the signal again to stop at once)", "signal", s.String())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		go func() { <-sig; cancel() }()
		err := d.Shutdown(ctx)
		cancel()
		return err
	}
	return nil
}

// bootstrap creates the first domain and account of a zero-config instance
// and returns the generated password, or "" when the store already has a
// domain.
func bootstrap(st store.Store) (string, error) {
	ctx := context.Background()
	ds, err := st.ListDomains(ctx)
	if err != nil || len(ds) > 0 {
		return "", err
	}
	m := accounts.NewManager(st)
	if err := m.AddDomain(ctx, firstDomain); err != nil && !errors.Is(err, store.ErrExists) {
		return "", err
	}
	pw := rand.Text()[:16]
	a, err := m.AddUser(ctx, firstUser, pw)
	if err != nil {
		return "", err
	}
	return pw, st.SetAdmin(ctx, a.ID, true)
}

func banner(e *env, cfg config.Config, d *daemon.Daemon, found bool, password string) {
	w := e.stdout
	fmt.Fprintf(w, "Tern is running as %s, data in %s.\n\n", cfg.Hostname, cfg.DataDir)
	rows := []struct{ name, what string }{
		{"smtp", "SMTP (mail from other servers)"},
		{"submission", "SMTP submission, STARTTLS"},
		{"submissions", "SMTP submission, TLS"},
		{"imap", "IMAP, STARTTLS"},
		{"imaps", "IMAP, TLS"},
		{"pop3", "POP3, STARTTLS"},
		{"pop3s", "POP3, TLS"},
	}
	for _, r := range rows {
		if a := d.Addr(r.name); a != nil {
			host, port, _ := net.SplitHostPort(a.String())
			fmt.Fprintf(w, "  %-32s host %s port %s\n", r.what, host, port)
		}
	}
	if a := d.Addr("http"); a != nil {
		fmt.Fprintf(w, "  %-32s http://%s/\n", "Webmail and admin", a)
	}
	if a := d.Addr("https"); a != nil {
		fmt.Fprintf(w, "  %-32s https://%s/\n", "Webmail and admin, TLS", a)
	}
	if password != "" {
		fmt.Fprintf(w, "\nA first account was created. Its password is shown only now:\n\n  user      %s\n  password  %s\n", firstUser, password)
	}
	if !found {
		fmt.Fprintf(w, "\nTo connect a mail client (e.g. Thunderbird): add an account with the\naddress above, choose manual configuration, and enter the IMAP and SMTP\nsubmission host and ports listed; the user name is the full address.\nThe certificate is self-signed (%s): accept it when the client asks.\nAdd users with: tern user add ADDRESS   (more: tern help)\n", d.CertFile())
	}
	fmt.Fprintln(w)
}
