package test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
	"github.com/ternmail/tern/internal/testenv"
)

// child is a `tern serve` run as a child process, as in production, for
// the tests that fill its disk or measure its memory.
type child struct {
	t     *testing.T
	dir   string // binary, config and logs
	bin   string
	conf  string
	addrs map[string]string // [listen] key → host:port
	cmd   *exec.Cmd
}

// newChild builds tern and writes a configuration with the named doors on
// free loopback ports, data in dataDir and limits (TOML lines of the
// [limits] table) added.
func newChild(t *testing.T, dataDir string, limits string, doors ...string) *child {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs tern serve; skipped with -short")
	}
	dir := t.TempDir()
	c := &child{t: t, dir: dir, bin: filepath.Join(dir, "tern"), conf: filepath.Join(dir, "tern.toml"),
		addrs: map[string]string{}}
	if out, err := exec.Command("go", "build", "-o", c.bin, "../cmd/tern").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var listen strings.Builder
	for _, l := range (&config.Config{}).Listeners() {
		addr := ""
		for _, d := range doors {
			if d == l.Name {
				addr = freeAddr(t)
				c.addrs[d] = addr
			}
		}
		fmt.Fprintf(&listen, "%s = %q\n", l.Name, addr)
	}
	conf := fmt.Sprintf("hostname = \"mail.fault.test\"\ndata_dir = %q\nallow_plaintext_auth = true\n[listen]\n%s[limits]\n%s\n",
		dataDir, listen.String(), limits)
	if err := os.WriteFile(c.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.kill)
	return c
}

// tern runs an admin command; args name the configuration with c.conf.
func (c *child) tern(stdin string, args ...string) (string, error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustTern is tern failing the test on error.
func (c *child) mustTern(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.tern(stdin, args...)
	if err != nil {
		c.t.Fatalf("tern %v: %v\n%s", args, err, out)
	}
	return out
}

// start runs tern serve and waits until every door listens.
func (c *child) start() {
	c.t.Helper()
	c.cmd = exec.Command(c.bin, "serve", "--config", c.conf)
	log, err := os.Create(filepath.Join(c.dir, "serve.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.cmd.Stdout, c.cmd.Stderr = log, log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	for _, a := range c.addrs {
		waitListening(c.t, a)
	}
}

// stop asks tern serve to drain (SIGTERM) and waits for it.
func (c *child) stop() {
	c.t.Helper()
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Errorf("tern serve exited with %v; log:\n%s", err, c.log())
		}
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
		c.t.Errorf("tern serve did not stop within 20s of SIGTERM")
	}
	c.cmd = nil
}

func (c *child) kill() {
	if c.cmd != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		c.cmd = nil
	}
}

func (c *child) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "serve.log"))
	return string(b)
}

// addUsers creates the accounts directly in the store (tern serve must
// not run), with a cheap argon2id hash: verifying tern's default
// parameters (64 MiB) thousands of times would take minutes. Stored
// hashes carry their own parameters (accounts.VerifyPassword).
func addUsers(t *testing.T, dataDir, domain, password string, users ...string) {
	t.Helper()
	st, err := sqlite.Open(dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.GetDomain(ctx, domain); err != nil {
		if err := accounts.NewManager(st).AddDomain(ctx, domain); err != nil {
			t.Fatal(err)
		}
	}
	hash := cheapHash(t, password)
	for _, u := range users {
		if _, err := st.AddAccount(ctx, accountWithHash(u, hash)); err != nil {
			t.Fatal(err)
		}
	}
}

// startServerWith is startServer with SMTP, IMAP and POP3 only, plaintext
// logins allowed and a configuration the test adjusts (short timeouts,
// higher limits); adjust may be nil.
func startServerWith(t *testing.T, domain string, users map[string]string, adjust func(*config.Config)) *server {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "mail." + domain
	cfg.DataDir = t.TempDir()
	cfg.AllowPlaintextAuth = true
	cfg.Listen = config.Listen{SMTP: "127.0.0.1:0", IMAP: "127.0.0.1:0", POP3: "127.0.0.1:0"}
	if adjust != nil {
		adjust(&cfg)
	}
	return runServer(t, cfg, domain, users)
}

// requireRoot skips a test that needs root (mount), or fails it under CI.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if testenv.InCI() {
		t.Fatalf("%s needs root under CI=true", why)
	}
	t.Skipf("%s needs root", why)
}

// cheapHash is an argon2id PHC string of password with the smallest
// parameters tern accepts.
func cheapHash(t *testing.T, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	rand.Read(salt)
	b64 := base64.RawStdEncoding
	hash := fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version,
		b64.EncodeToString(salt), b64.EncodeToString(argon2.IDKey([]byte(password), salt, 1, 8, 1, 32)))
	if !accounts.VerifyPassword(hash, password) {
		t.Fatal("cheap hash does not verify")
	}
	return hash
}

func accountWithHash(address, hash string) store.Account {
	return store.Account{Address: address, PasswordHash: hash}
}
