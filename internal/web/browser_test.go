package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/ternmail/tern/internal/testenv"
)

// tracker is a loopback HTTP server standing in for a sender's tracking
// pixel: it records every request it gets.
type tracker struct {
	*httptest.Server
	mu   sync.Mutex
	hits []string
}

func newTracker(t *testing.T) *tracker {
	tr := &tracker{}
	tr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.hits = append(tr.hits, r.URL.Path)
		tr.mu.Unlock()
		w.Header().Set("Content-Type", "image/gif")
		w.Write([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	}))
	t.Cleanup(tr.Close)
	return tr
}

func (tr *tracker) seen() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.hits...)
}

// browserEnv is a headless Chromium tab logged into nothing yet.
type browserEnv struct {
	t         *testing.T
	ctx       context.Context
	base      string
	artifacts string
	downloads string
}

func newBrowser(t *testing.T, base string) *browserEnv {
	path := testenv.LookPath(t, "chromium")
	artifacts := os.Getenv("TERN_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else {
		artifacts = filepath.Join(artifacts, "web")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	b := &browserEnv{t: t, ctx: ctx, base: base, artifacts: artifacts, downloads: t.TempDir()}
	// Start the browser with no deadline (a deadline on the first run
	// would bound the browser's life), then allow downloads.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: b.downloads,
	}); err != nil {
		t.Fatalf("download behaviour: %v", err)
	}
	return b
}

// do runs steps with a timeout.
func (b *browserEnv) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browserEnv) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a screenshot of the whole page as an artefact (quality 100
// makes a PNG; less would be JPEG).
func (b *browserEnv) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(b.artifacts, name+".png"), png, 0o644)
}

// waitText waits until the page's body text contains s.
func (b *browserEnv) waitText(what, s string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(b.eval("document.body ? document.body.innerText : ''"), s) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
	b.t.Fatalf("%s: page never showed %q", what, s)
}

func (b *browserEnv) login(user string) {
	b.t.Helper()
	b.do("login "+user,
		chromedp.Navigate(b.base+"/login"),
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), user),
		chromedp.SendKeys(chromedp.ID("password"), testPass),
		chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.mailboxes`)),
	)
}

func (b *browserEnv) logout() {
	b.t.Helper()
	b.do("logout",
		chromedp.Click(chromedp.CSS(`header form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("user")),
	)
}

// TestBrowser drives headless Chromium through the webmail: compose with
// an attachment to a local and a remote user, see it in Sent, read it as
// the other user, download the attachment, see new mail arrive without a
// reload, and check that a hostile message neither runs nor loads
// anything. Screenshots of each page go to $TERN_ARTIFACTS/web.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	e := newEnv(t, envOpts{relay: true})
	b := newBrowser(t, e.ts.URL)

	payload := append([]byte("%PDF-1.4 not really\x00\x01\x02\xff"), randomBytes(200_000)...)
	browserCompose(t, e, b, payload)
	b.logout()
	b.login(bob)
	browserRead(t, b, payload)
	browserLive(t, e, b)
	browserHostile(t, e, b)
	b.logout()

	b.login(alice)
	b.do("admin", chromedp.Click(chromedp.CSS(`a[href="/admin"]`)), chromedp.WaitVisible(chromedp.ID("queue")))
	b.waitText("admin queue", "carol@remote.test")
	b.shot("10-admin")
	browserFolders(t, e, b)
}

// browserCompose logs in as alice and sends payload as an attachment to
// bob and to a remote address.
func browserCompose(t *testing.T, e *env, b *browserEnv, payload []byte) {
	b.do("login page", chromedp.Navigate(b.base+"/login"), chromedp.WaitVisible(chromedp.ID("user")))
	b.shot("01-login")
	b.login(alice)
	b.shot("02-inbox-empty")
	dir := t.TempDir()
	file := filepath.Join(dir, "report.pdf")
	big := filepath.Join(dir, "huge.bin")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, e.maxBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	b.do("compose",
		chromedp.Click(chromedp.CSS(`a[href="/compose"]`)),
		chromedp.WaitVisible(chromedp.ID("to")),
		chromedp.SendKeys(chromedp.ID("to"), bob+", carol@remote.test"),
		chromedp.SendKeys(chromedp.ID("subject"), "Quarterly report"),
		chromedp.SendKeys(chromedp.ID("body"), "Hello Bob,\nthe report is attached.\n"),
		// Too large: the script stops the upload and says why.
		chromedp.SetUploadFiles(chromedp.ID("attachment"), []string{big}),
		chromedp.Click(chromedp.CSS(`button[value=send]`)),
		chromedp.WaitVisible(chromedp.ID("size-error")),
		chromedp.SetUploadFiles(chromedp.ID("attachment"), []string{file}),
	)
	b.shot("03-compose")
	b.do("send", chromedp.Click(chromedp.CSS(`button[value=send]`)))
	b.waitText("sent list", "Message sent.")
	b.waitText("sent list", "Quarterly report")
	if !strings.Contains(b.eval(`document.querySelector('[aria-current=page]').textContent`), "Sent") {
		t.Errorf("after sending, the page is not Sent")
	}
	b.shot("04-sent")
	if q, err := e.st.ListQueue(context.Background()); err != nil || len(q) != 1 || q[0].Recipients[0].Address != "carol@remote.test" {
		t.Errorf("remote recipient not queued: %+v %v", q, err)
	}
}

// browserRead reads the message as bob and downloads its attachment.
func browserRead(t *testing.T, b *browserEnv, payload []byte) {
	b.waitText("bob inbox", "Quarterly report")
	if n := b.eval(`document.querySelector('[data-unseen] .n').textContent`); n != "1" {
		t.Errorf("unread count = %s", n)
	}
	b.shot("05-inbox")
	b.do("open message", chromedp.Click(chromedp.CSS(`table.messages a`)), chromedp.WaitVisible(chromedp.CSS(`section.attachments`)))
	b.waitText("message", "the report is attached.")
	b.shot("06-message")
	b.do("download", chromedp.Click(chromedp.CSS(`section.attachments a`)))
	got := waitFile(t, filepath.Join(b.downloads, "report.pdf"), int64(len(payload)))
	if !bytes.Equal(got, payload) {
		t.Errorf("downloaded attachment differs: %d bytes, want %d", len(got), len(payload))
	}
}

// browserLive delivers a message while bob looks at his inbox: it shows
// up, and the unread count rises, without a reload.
func browserLive(t *testing.T, e *env, b *browserEnv) {
	b.do("back to inbox", chromedp.Click(chromedp.CSS(`nav.mailboxes a`)), chromedp.WaitVisible(chromedp.CSS(`table.messages`)))
	b.eval(`window.ternMarker = "same page"; "ok"`)
	e.put(bob, "From: Dana <dana@other.test>\nSubject: Live delivery\n\nHello\n")
	b.waitText("live delivery", "Live delivery")
	if m := b.eval(`String(window.ternMarker)`); m != "same page" {
		t.Errorf("the page was reloaded (marker %q)", m)
	}
	deadline := time.Now().Add(15 * time.Second)
	for b.eval(`document.querySelector('[data-unseen] .n').textContent`) != "1" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := b.eval(`document.querySelector('[data-unseen] .n').textContent`); n != "1" {
		t.Errorf("unread count after live delivery = %s", n)
	}
	b.shot("07-live")
}

// browserHostile opens a message with a script and remote images: the
// tracker hears nothing until bob asks for images, and even then no
// script runs.
func browserHostile(t *testing.T, e *env, b *browserEnv) {
	tr := newTracker(t)
	e.put(bob, fmt.Sprintf(`From: Mallory <mallory@other.test>
Subject: Hostile
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<p id="greeting">Hello from Mallory</p>
<script>new Image().src = "%[1]s/script"; parent.document.title = "pwned";</script>
<img src="%[1]s/pixel.gif" onerror="new Image().src='%[1]s/onerror'" alt="pixel">
<div style="background-image:url(%[1]s/bg.png)">styled</div>
`, tr.URL))
	b.waitText("hostile in list", "Hostile")
	b.do("open hostile", chromedp.Click(chromedp.CSS(`tr.unread a`)), chromedp.WaitVisible(chromedp.CSS(`iframe.body`)))
	time.Sleep(time.Second) // room for anything that would load
	if hits := tr.seen(); len(hits) != 0 {
		t.Errorf("the tracker was contacted: %v", hits)
	}
	if title := b.eval(`document.title`); strings.Contains(title, "pwned") {
		t.Errorf("script ran: title %q", title)
	}
	frame := b.eval(`(() => { try { return document.querySelector('iframe.body').contentDocument === null ? "opaque" : "same-origin"; } catch (e) { return "opaque"; } })()`)
	if frame != "opaque" {
		t.Errorf("the message frame is readable from the page: %s", frame)
	}
	b.shot("08-hostile-blocked")
	b.do("show images", chromedp.Click(chromedp.ID("show-images")), chromedp.WaitVisible(chromedp.CSS(`iframe.body`)))
	deadline := time.Now().Add(15 * time.Second)
	for !contains(tr.seen(), "/pixel.gif") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	hits := tr.seen()
	if !contains(hits, "/pixel.gif") {
		t.Errorf("remote image not loaded when asked: %v", hits)
	}
	if contains(hits, "/script") || contains(hits, "/onerror") {
		t.Errorf("script ran with images on: %v", hits)
	}
	b.shot("09-hostile-images")
}

// browserFolders creates a folder and one inside it, renames the
// outer one, and sees both in the navigation under their new names.
func browserFolders(t *testing.T, e *env, b *browserEnv) {
	b.do("folders page", chromedp.Click(chromedp.CSS(`a[href="/folders"]`)), chromedp.WaitVisible(chromedp.ID("new-name")))
	b.do("create Clients",
		chromedp.SendKeys(chromedp.ID("new-name"), "Clients"),
		chromedp.Click(chromedp.CSS(`#folder-create button[type=submit]`)),
	)
	b.waitText("Clients created", "Folder “Clients” created.")
	clients := e.mailbox(e.alice, "Clients")
	b.do("create Acme inside",
		chromedp.SendKeys(chromedp.ID("new-name"), "Acme"),
		chromedp.SetValue(chromedp.ID("new-parent"), strconv.FormatInt(clients.ID, 10)),
		chromedp.Click(chromedp.CSS(`#folder-create button[type=submit]`)),
	)
	b.waitText("Acme created", "Folder “Clients/Acme” created.")
	b.shot("11-folders-created")
	field := chromedp.ID("rename-" + strconv.FormatInt(clients.ID, 10))
	b.do("rename Clients",
		chromedp.Clear(field),
		chromedp.SendKeys(field, "Customers"),
		chromedp.Click(chromedp.CSS(`button[aria-label="Rename Clients"]`)),
	)
	b.waitText("renamed", "Folder “Clients” renamed to “Customers”.")
	nav := b.eval(`Array.from(document.querySelectorAll("nav.mailboxes a")).map(a => a.title).join(",")`)
	if !strings.Contains(nav, "Customers,Customers/Acme") || strings.Contains(nav, "Clients") {
		t.Errorf("navigation after rename: %s", nav)
	}
	if n := b.eval(`document.querySelector('nav.mailboxes a[title="Customers"]').parentElement.querySelectorAll('ul a[title="Customers/Acme"]').length.toString()`); n != "1" {
		t.Errorf("Acme is not nested under Customers in the navigation")
	}
	b.shot("12-folders-renamed")
	b.do("open renamed", chromedp.Click(chromedp.CSS(`nav.mailboxes a[title="Customers/Acme"]`)), chromedp.WaitVisible(chromedp.CSS(`form#list`)))
	b.waitText("renamed folder list", "Customers/Acme")
	if cur := b.eval(`document.querySelector('[aria-current=page]').title`); cur != "Customers/Acme" {
		t.Errorf("current mailbox in the navigation = %q", cur)
	}
	b.shot("13-folder-open")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitFile waits for a download to complete and returns its bytes.
func waitFile(t *testing.T, path string, size int64) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() >= size {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	t.Fatalf("download %s never completed; directory has %v", path, names)
	return nil
}
