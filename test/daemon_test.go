package test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/smtp"
	"testing"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/store/sqlite"
)

// A second server on the same data directory is refused, and admin
// commands (a second store handle in another process) work meanwhile.
func TestSecondServerRefusedAdminWorks(t *testing.T) {
	s := startServer(t, "a.test", map[string]string{"alice@a.test": "pw"})
	cfg := s.cfg
	cfg.Listen.SMTP = "127.0.0.1:0"
	if _, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); !errors.Is(err, daemon.ErrRunning) {
		t.Fatalf("second server: %v, want ErrRunning", err)
	}

	admin, err := sqlite.Open(cfg.DataDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := accounts.NewManager(admin).AddUser(context.Background(), "late@a.test", "late-pw"); err != nil {
		t.Fatal(err)
	}
	// The running server sees the account added by the other handle.
	err = smtp.SendMail(s.Addr("smtp").String(), nil, "x@b.test", []string{"late@a.test"}, []byte("Subject: hi\r\n\r\nhi\r\n"))
	if err == nil {
		return
	}
	// net/smtp insists on verifying STARTTLS certificates; fall back to
	// a plain session.
	c, err := smtp.Dial(s.Addr("smtp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("x@b.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("late@a.test"); err != nil {
		t.Fatalf("the running server does not know an account added meanwhile: %v", err)
	}
}
