package test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/smtp"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
)

// TestWebDoor runs tern's daemon with the web door: a message that
// arrives by SMTP is read in webmail, and a reply sent from the web lands
// in the sender's mailbox, through the same store and delivery path.
func TestWebDoor(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname = "mail.web.test"
	cfg.DataDir = t.TempDir()
	imapAddr := freeAddr(t)
	cfg.Listen = config.Listen{SMTP: "127.0.0.1:0", HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", IMAP: imapAddr}
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
	ctx := context.Background()
	m := accounts.NewManager(d.Store())
	if err := m.AddDomain(ctx, "web.test"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann@web.test", "ben@web.test"} {
		if _, err := m.AddUser(ctx, u, "a long password"); err != nil {
			t.Fatal(err)
		}
	}
	msg := "From: ben@web.test\r\nTo: ann@web.test\r\nSubject: Lunch on Friday\r\n\r\nShall we?\r\n"
	sendPlainSMTP(t, d.Addr("smtp").String(), "ben@web.test", "ann@web.test", msg)

	base := "http://" + d.Addr("http").String()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(path string) string {
		t.Helper()
		res, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, res.Status)
		}
		return string(b)
	}
	// Mail clients configure themselves from the same listener.
	if xml := get("/mail/config-v1.1.xml?emailaddress=ann@web.test"); !strings.Contains(xml, "<hostname>mail.web.test</hostname>") ||
		!strings.Contains(xml, "<port>"+imapAddr[strings.LastIndex(imapAddr, ":")+1:]+"</port>") {
		t.Errorf("autoconfig:\n%s", xml)
	}
	res, err := hc.PostForm(base+"/login", url.Values{"user": {"ann@web.test"}, "password": {"a long password"}})
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(inbox), "Lunch on Friday") {
		t.Fatalf("message received by SMTP not in the web inbox:\n%s", inbox)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(inbox))[1]
	link := regexp.MustCompile(`href="(/message/\d+/\d+)"`).FindStringSubmatch(string(inbox))[1]
	if page := get(link); !strings.Contains(page, "Shall we?") {
		t.Fatalf("message page:\n%s", page)
	}
	res, err = hc.PostForm(base+"/compose", url.Values{"csrf": {csrf}, "action": {"send"},
		"to": {"ben@web.test"}, "subject": {"Re: Lunch on Friday"}, "body": {"Yes!"}})
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(sent), "Message sent.") {
		t.Fatalf("send from the web:\n%s", sent)
	}
	ben, err := d.Store().GetAccount(ctx, "ben@web.test")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := d.Store().GetMailbox(ctx, ben.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := d.Store().MailboxStatus(ctx, mb.ID); err != nil || st.Messages != 1 {
		t.Errorf("ben's INBOX: %+v %v", st, err)
	}

	// Over TLS, with the server's (self-signed) certificate, the session
	// cookie is Secure.
	tc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err = tc.PostForm("https://"+d.Addr("https").String()+"/login", url.Values{"user": {"ben@web.test"}, "password": {"a long password"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if ck := res.Cookies(); res.StatusCode != http.StatusSeeOther || len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly {
		t.Errorf("login over TLS: %s, cookies %+v", res.Status, ck)
	}
}

// sendPlainSMTP sends one message over SMTP without STARTTLS (the test
// server's certificate is self-signed).
func sendPlainSMTP(t *testing.T, addr, from, to, msg string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	io.WriteString(w, msg)
	if err := w.Close(); err != nil {
		t.Fatalf("DATA end: %v", err)
	}
	c.Quit()
}
