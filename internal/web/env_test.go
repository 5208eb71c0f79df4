package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
	"github.com/ternmail/tern/internal/testenv"
)

const (
	testDomain = "example.test"
	alice      = "alice@example.test" // an admin
	bob        = "bob@example.test"
	testPass   = testenv.Password
)

// env is a web server over a real SQLite store with two accounts.
type env struct {
	t        testing.TB
	st       *sqlite.Store
	del      *deliver.Deliverer
	srv      *Server
	ts       *httptest.Server
	alice    store.Account
	bob      store.Account
	maxBytes int64
}

type envOpts struct {
	tls      bool
	relay    bool
	maxBytes int64
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testenv.Writer(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	log := testLogger(t)
	st, m := testenv.Store(t, log, testDomain)
	e := &env{t: t, st: st, maxBytes: o.maxBytes}
	if e.maxBytes == 0 {
		e.maxBytes = 10 << 20
	}
	users := testenv.Users(t, m, alice, bob)
	e.alice, e.bob = users[0], users[1]
	if err := st.SetAdmin(ctx, e.alice.ID, true); err != nil {
		t.Fatal(err)
	}
	e.del = deliver.New(st, deliver.Config{MaxMessageBytes: e.maxBytes + 64<<10, Relay: o.relay}, log)
	au := auth.New(st, auth.Config{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxFailures: 5}, log)
	var err error
	e.srv, err = New(Config{Hostname: "mail.example.test", MaxMessageBytes: e.maxBytes},
		Deps{Store: st, Deliver: e.del, Auth: au, Accounts: m, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewUnstartedServer(e.srv.Handler())
	e.ts.Config = e.srv.http
	if o.tls {
		e.ts.StartTLS()
	} else {
		e.ts.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		e.ts.Close()
	})
	return e
}

// client is one browser: a cookie jar, no automatic redirects.
type client struct {
	e    *env
	hc   *http.Client
	csrf string
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: e.ts.Client().Transport, Jar: jar}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client{e: e, hc: hc}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs in and remembers the CSRF token of the first page.
func (e *env) login(user string) *client {
	e.t.Helper()
	c := e.client()
	res := c.postForm("/login", url.Values{"user": {user}, "password": {testPass}})
	if res.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login: %s", res.Status)
	}
	_, body := c.get("/")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no CSRF token on the first page")
	}
	c.csrf = m[1]
	return c
}

func (c *client) do(req *http.Request) *http.Response {
	c.e.t.Helper()
	res, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return res
}

// get follows redirects and returns the final response and body.
func (c *client) get(path string) (*http.Response, string) {
	c.e.t.Helper()
	for range 5 {
		req, _ := http.NewRequest("GET", c.e.ts.URL+path, nil)
		res := c.do(req)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusSeeOther || res.StatusCode == http.StatusFound {
			path = res.Header.Get("Location")
			continue
		}
		return res, string(b)
	}
	c.e.t.Fatalf("too many redirects")
	return nil, ""
}

func (c *client) postForm(path string, v url.Values) *http.Response {
	c.e.t.Helper()
	req, _ := http.NewRequest("POST", c.e.ts.URL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res := c.do(req)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// post posts a form with the session's CSRF token.
func (c *client) post(path string, v url.Values) *http.Response {
	v.Set("csrf", c.csrf)
	return c.postForm(path, v)
}

// compose posts the compose form with files, and returns the response
// and its body.
func (c *client) compose(fields map[string]string, files map[string][]byte) (*http.Response, string) {
	c.e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("csrf", c.csrf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for name, data := range files {
		w, _ := mw.CreateFormFile("attachment", name)
		w.Write(data)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", c.e.ts.URL+"/compose", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res := c.do(req)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// put delivers a raw message to an account's INBOX through deliver.
func (e *env) put(to, raw string) {
	e.t.Helper()
	ctx := context.Background()
	rc, err := e.del.Resolve(ctx, to)
	if err != nil {
		e.t.Fatal(err)
	}
	raw = strings.ReplaceAll(raw, "\n", "\r\n")
	if err := e.del.Deliver(ctx, &deliver.Message{From: "sender@other.test", Recipients: []deliver.Recipient{rc}, Body: strings.NewReader(raw)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) mailbox(acct store.Account, name string) store.Mailbox {
	e.t.Helper()
	mb, err := e.st.GetMailbox(context.Background(), acct.ID, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return mb
}

// messages returns the messages of a mailbox, oldest first.
func (e *env) messages(acct store.Account, name string) []store.Message {
	e.t.Helper()
	ms, err := e.srv.loadMessages(context.Background(), e.mailbox(acct, name).ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return ms
}
