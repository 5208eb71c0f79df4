package test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/testenv"
)

// Several Tern nodes on one PostgreSQL database (issue 10). The database
// is TERN_TEST_POSTGRES; each test gets its own schema.

// pgSchemaDSN creates a fresh schema in the test database and returns a
// DSN that selects it.
func pgSchemaDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("TERN_TEST_POSTGRES")
	if dsn == "" {
		if testenv.InCI() {
			t.Fatal("TERN_TEST_POSTGRES is required under CI=true")
		}
		t.Skip("TERN_TEST_POSTGRES not set")
	}
	schema := fmt.Sprintf("tern_e2e_%d_%d", os.Getpid(), rand.IntN(1e9))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// startPGNode starts an in-process tern serve on the PostgreSQL store
// with SMTP and IMAP on free loopback ports, its own data directory and
// plaintext logins.
func startPGNode(t *testing.T, dsn string) *daemon.Daemon {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "mail.pg.test"
	cfg.DataDir = t.TempDir()
	cfg.AllowPlaintextAuth = true
	cfg.Store = config.Store{Driver: config.DriverPostgres, DSN: dsn}
	cfg.Listen = config.Listen{SMTP: "127.0.0.1:0", IMAP: "127.0.0.1:0"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	return d
}

// pgSend sends one message over SMTP; nil means 250 after DATA.
func pgSend(addr, rcpt, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("s@else.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// TestTwoNodesPostgres runs two nodes on one database: mail submitted
// through either lands once; IMAP IDLE on node B hears of a delivery made
// through node A within 100 ms.
func TestTwoNodesPostgres(t *testing.T) {
	dsn := pgSchemaDSN(t)
	a := startPGNode(t, dsn)
	b := startPGNode(t, dsn)
	ctx := t.Context()
	m := accounts.NewManager(a.Store())
	if err := m.AddDomain(ctx, "pg.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddUser(ctx, "u@pg.test", "password"); err != nil {
		t.Fatal(err)
	}

	exists := make(chan uint32, 100)
	c, err := imapclient.DialInsecure(b.Addr("imap").String(), &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("u@pg.test", "password").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // IDLE's continuation is in
	var worst time.Duration
	for i := range 5 {
		body := fmt.Sprintf("Subject: idle %d\r\n\r\nthrough node A\r\n", i)
		if err := pgSend(a.Addr("smtp").String(), "u@pg.test", body); err != nil {
			t.Fatal(err)
		}
		acked := time.Now()
		select {
		case n := <-exists:
			worst = max(worst, time.Since(acked))
			if n != uint32(i+1) {
				t.Errorf("EXISTS %d, want %d", n, i+1)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("IDLE on node B not woken by a delivery through node A")
		}
	}
	t.Logf("slowest IDLE wake-up on node B after node A's 250: %v", worst)
	if worst > 100*time.Millisecond {
		t.Errorf("IDLE on node B woke %v after node A acknowledged, want < 100ms", worst)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	// Mail submitted through both nodes at once lands exactly once.
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		node := []*daemon.Daemon{a, b}[i%2]
		wg.Go(func() {
			body := fmt.Sprintf("Subject: load %d\r\n\r\ntoken-%d\r\n", i, i)
			if err := pgSend(node.Addr("smtp").String(), "u@pg.test", body); err != nil {
				t.Errorf("message %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	acct, err := b.Store().GetAccount(ctx, "u@pg.test")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.Store().GetMailbox(ctx, acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := b.Store().ListMessages(ctx, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != n+5 {
		t.Errorf("INBOX holds %d messages, want %d", len(ms), n+5)
	}
	if p, err := a.Store().Check(ctx); err != nil || len(p) > 0 {
		t.Errorf("Check: %v %v", p, err)
	}
}
