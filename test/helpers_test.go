// Package test holds Tern's end-to-end tests: whole servers started as they
// run in production, driven by real mail clients over loopback.
package test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/testenv"
)

// server is one in-process Tern with every door on a free loopback port.
type server struct {
	*daemon.Daemon
	cfg config.Config
}

func startServer(t *testing.T, domain string, users map[string]string) *server {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "mail." + domain
	cfg.DataDir = t.TempDir()
	cfg.Listen = config.Listen{
		SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0",
		IMAP: "127.0.0.1:0", IMAPS: "127.0.0.1:0", POP3: "127.0.0.1:0", POP3S: "127.0.0.1:0",
	}
	return runServer(t, cfg, domain, users)
}

// runServer starts a Tern with cfg, stopped when the test ends, and gives
// it domain and users (address → password). Its log goes to stderr with
// -v and TERN_TEST_LOG set.
func runServer(t *testing.T, cfg config.Config, domain string, users map[string]string) *server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() && os.Getenv("TERN_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := daemon.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	m := accounts.NewManager(d.Store())
	ctx := context.Background()
	if err := m.AddDomain(ctx, domain); err != nil {
		t.Fatal(err)
	}
	for u, pw := range users {
		if _, err := m.AddUser(ctx, u, pw); err != nil {
			t.Fatal(err)
		}
	}
	return &server{Daemon: d, cfg: cfg}
}

func (s *server) port(name string) string {
	a := s.Addr(name).String()
	return a[strings.LastIndex(a, ":")+1:]
}

// python runs a Python script from testdata with arguments and returns its
// standard output; a failing script fails the test with its stderr.
func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	py := testenv.LookPath(t, "python3")
	cmd := exec.Command(py, append([]string{filepath.Join("testdata", script)}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", script, args, err, stderr.String())
	}
	return string(out)
}
