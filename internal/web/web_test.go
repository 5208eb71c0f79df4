package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
)

func TestLoginLogout(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	req, _ := http.NewRequest("GET", e.ts.URL+"/", nil)
	if res := c.do(req); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Fatalf("GET / without session: %s to %q", res.Status, res.Header.Get("Location"))
	}
	res, body := c.get("/login")
	if res.StatusCode != 200 || !strings.Contains(body, `<label for="user">`) {
		t.Fatalf("login page: %s", res.Status)
	}
	if got := res.Header.Get("Content-Security-Policy"); got != pageCSP {
		t.Errorf("CSP = %q", got)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " on") && strings.Contains(body, "onclick") {
		t.Errorf("inline script on the login page")
	}

	res = c.postForm("/login", url.Values{"user": {alice}, "password": {"wrong"}})
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %s", res.Status)
	}
	res = c.postForm("/login", url.Values{"user": {alice}, "password": {testPass}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s", res.Status)
	}
	ck := res.Cookies()
	if len(ck) != 1 || ck[0].Name != cookieName || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Secure {
		t.Errorf("cookie = %+v", ck)
	}
	if n := len(ck[0].Value); n < 43 {
		t.Errorf("session id has %d characters, want ≥ 43 (256 bits)", n)
	}
	_, body = c.get("/")
	if !strings.Contains(body, "<h1>INBOX</h1>") || !strings.Contains(body, alice) {
		t.Fatalf("home is not the inbox:\n%s", body)
	}
	c.csrf = csrfRE.FindStringSubmatch(body)[1]
	if res := c.post("/logout", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", res.Status)
	}
	if e.srv.sessions.len() != 0 {
		t.Errorf("%d sessions after logout", e.srv.sessions.len())
	}
	req, _ = http.NewRequest("GET", e.ts.URL+"/", nil)
	if res := c.do(req); res.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %s", res.Status)
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	var last int
	for range 7 {
		last = c.postForm("/login", url.Values{"user": {bob}, "password": {"nope"}}).StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("after 7 failures: %d, want 429", last)
	}
	if res := c.postForm("/login", url.Values{"user": {bob}, "password": {testPass}}); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("right password while throttled: %s", res.Status)
	}
}

func TestSecureCookieUnderTLS(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	c := e.client()
	res := c.postForm("/login", url.Values{"user": {alice}, "password": {testPass}})
	ck := res.Cookies()
	if len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly {
		t.Errorf("cookie over TLS = %+v", ck)
	}
	if res.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("no HSTS over TLS")
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put(alice, "From: x@other.test\nSubject: hi\n\nbody\n")
	c := e.login(alice)
	inbox := e.mailbox(e.alice, "INBOX")
	path := "/mailbox/" + strconv.FormatInt(inbox.ID, 10)
	uid := strconv.Itoa(int(e.messages(e.alice, "INBOX")[0].UID))
	form := url.Values{"action": {"flag"}, "uid": {uid}}
	if res := c.postForm(path, form); res.StatusCode != http.StatusForbidden {
		t.Errorf("POST without token: %s", res.Status)
	}
	form.Set("csrf", "forged")
	if res := c.postForm(path, form); res.StatusCode != http.StatusForbidden {
		t.Errorf("POST with a wrong token: %s", res.Status)
	}
	// Another session's token is no good either.
	other := e.login(alice)
	form.Set("csrf", other.csrf)
	if res := c.postForm(path, form); res.StatusCode != http.StatusForbidden {
		t.Errorf("POST with another session's token: %s", res.Status)
	}
	// A browser's cross-site POST is refused before any token check.
	req, _ := http.NewRequest("POST", e.ts.URL+path, strings.NewReader(url.Values{"action": {"flag"}, "uid": {uid}, "csrf": {c.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if res := c.do(req); res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %s", res.Status)
	}
	if m := e.messages(e.alice, "INBOX")[0]; slices.Contains(m.Flags, store.FlagFlagged) {
		t.Fatalf("a refused POST flagged the message")
	}
	if res := c.post(path, url.Values{"action": {"flag"}, "uid": {uid}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("POST with token: %s", res.Status)
	}
	if m := e.messages(e.alice, "INBOX")[0]; !slices.Contains(m.Flags, store.FlagFlagged) {
		t.Errorf("flag not set: %v", m.Flags)
	}
}

const hostileHTML = `From: Mallory <mallory@other.test>
To: alice@example.test
Subject: =?utf-8?q?Hostile_=E2=9C=93?=
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<p>Hello <b>there</b></p>
<script>document.title='pwned'</script>
<img src="http://tracker.invalid/pixel.gif" onerror="alert(1)" alt="pixel">
<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==" alt="dot">
<a href="javascript:alert(2)">js link</a> <a href="https://example.org/">ok link</a>
<iframe src="https://evil.invalid/"></iframe>
<div style="background-image:url(http://tracker.invalid/bg.png);color:red">styled</div>
`

func TestHTMLSanitised(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put(alice, hostileHTML)
	c := e.login(alice)
	mb := e.mailbox(e.alice, "INBOX")
	msgPath := messageURL(mb.ID, e.messages(e.alice, "INBOX")[0].UID)

	res, page := c.get(msgPath)
	if res.StatusCode != 200 {
		t.Fatalf("message page: %s", res.Status)
	}
	if !strings.Contains(page, "Hostile ✓") {
		t.Errorf("subject not decoded")
	}
	if strings.Contains(page, "tracker.invalid") || strings.Contains(page, "pwned") {
		t.Errorf("message content leaked into the page itself")
	}
	if !strings.Contains(page, `sandbox="allow-popups allow-popups-to-escape-sandbox"`) || strings.Contains(page, "allow-scripts") || strings.Contains(page, "allow-same-origin") {
		t.Errorf("iframe sandbox wrong")
	}
	if !strings.Contains(page, "Show remote images") {
		t.Errorf("no offer to show remote images")
	}

	res, doc := c.get(msgPath + "/html")
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.HasPrefix(csp, "default-src 'none'; img-src data:;") || !strings.Contains(csp, "sandbox") {
		t.Errorf("body CSP = %q", csp)
	}
	for _, bad := range []string{"<script", "pwned", "onerror", "tracker.invalid", "javascript:", "<iframe", "evil.invalid"} {
		if strings.Contains(doc, bad) {
			t.Errorf("sanitised body contains %q:\n%s", bad, doc)
		}
	}
	for _, good := range []string{"<b>there</b>", `src="data:image/png;base64,`, `href="https://example.org/"`, "color: red", `rel="nofollow noreferrer noopener" target="_blank"`} {
		if !strings.Contains(doc, good) {
			t.Errorf("sanitised body lacks %q:\n%s", good, doc)
		}
	}

	res, doc = c.get(msgPath + "/html?images=1")
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src data: https: http:") {
		t.Errorf("CSP with images = %q", csp)
	}
	if !strings.Contains(doc, `src="http://tracker.invalid/pixel.gif"`) {
		t.Errorf("remote image not shown when asked:\n%s", doc)
	}
	if strings.Contains(doc, "<script") || strings.Contains(doc, "onerror") {
		t.Errorf("script with images on")
	}
}

func TestPlainTextEscaped(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put(alice, "From: x@other.test\nSubject: <b>bold</b>\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n<script>alert(1)</script> caf=E9\n")
	c := e.login(alice)
	mb := e.mailbox(e.alice, "INBOX")
	_, page := c.get(messageURL(mb.ID, e.messages(e.alice, "INBOX")[0].UID))
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<b>bold") {
		t.Errorf("text not escaped")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt; café") {
		t.Errorf("text body not shown decoded:\n%s", page)
	}
	if strings.Contains(page, "<iframe") {
		t.Errorf("plain text shown in an iframe")
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestSendWithAttachment(t *testing.T) {
	e := newEnv(t, envOpts{})
	a := e.login(alice)
	data := randomBytes(100_000)
	res, body := a.compose(map[string]string{"to": bob, "cc": "", "subject": "Report ✓", "body": "See attached.\nBye", "action": "send"},
		map[string][]byte{"report.bin": data})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %s\n%s", res.Status, body)
	}
	sent := e.messages(e.alice, "Sent")
	if len(sent) != 1 || !slices.Contains(sent[0].Flags, store.FlagSeen) {
		t.Fatalf("Sent = %+v", sent)
	}
	inbox := e.messages(e.bob, "INBOX")
	if len(inbox) != 1 {
		t.Fatalf("bob's INBOX has %d messages", len(inbox))
	}
	m := inbox[0]
	if got := decodeHeader(m.Info.Envelope.Subject); got != "Report ✓" {
		t.Errorf("subject = %q", got)
	}
	if m.Info.Envelope.MessageID == "" || m.Info.Envelope.Date == "" {
		t.Errorf("no Message-ID or Date: %+v", m.Info.Envelope)
	}
	b := e.login(bob)
	mb := e.mailbox(e.bob, "INBOX")
	_, page := b.get(messageURL(mb.ID, m.UID))
	if !strings.Contains(page, "See attached.\nBye") || !strings.Contains(page, "report.bin") {
		t.Fatalf("message page:\n%s", page)
	}
	atts := attachments(&m.Info.Body)
	if len(atts) != 1 {
		t.Fatalf("attachments = %+v", atts)
	}
	res, got := b.get(messageURL(mb.ID, m.UID) + "/part/" + atts[0].Path)
	if !bytes.Equal([]byte(got), data) {
		t.Errorf("download differs: %d bytes, want %d", len(got), len(data))
	}
	if cd := res.Header.Get("Content-Disposition"); cd != `attachment; filename=report.bin` {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	// Another user cannot read it by guessing IDs.
	res, _ = a.get(messageURL(mb.ID, m.UID) + "/part/" + atts[0].Path)
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("alice reading bob's attachment: %s", res.Status)
	}

	// Forward keeps the attachment; reply marks \Answered.
	_, form := b.get(fmt.Sprintf("/compose?mode=forward&mb=%d&uid=%d", mb.ID, m.UID))
	if !strings.Contains(form, "Fwd: Report ✓") || !strings.Contains(form, `name="keep" value="2"`) {
		t.Fatalf("forward form:\n%s", form)
	}
	res, body = b.compose(map[string]string{"to": alice, "subject": "Fwd: Report", "body": "fyi", "mode": "forward",
		"source_mb": strconv.FormatInt(mb.ID, 10), "source_uid": strconv.Itoa(int(m.UID)), "keep": "2", "action": "send"}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("forward: %s\n%s", res.Status, body)
	}
	fw := e.messages(e.alice, "INBOX")
	if len(fw) != 1 {
		t.Fatalf("alice's INBOX has %d", len(fw))
	}
	fa := attachments(&fw[0].Info.Body)
	if len(fa) != 1 || fa[0].Name != "report.bin" {
		t.Fatalf("forwarded attachments = %+v", fa)
	}
	_, got = a.get(messageURL(e.mailbox(e.alice, "INBOX").ID, fw[0].UID) + "/part/" + fa[0].Path)
	if !bytes.Equal([]byte(got), data) {
		t.Errorf("forwarded attachment differs")
	}
	if m := e.messages(e.bob, "INBOX")[0]; !slices.Contains(m.Flags, "$Forwarded") {
		t.Errorf("source not marked forwarded: %v", m.Flags)
	}

	_, form = a.get(fmt.Sprintf("/compose?mode=replyall&mb=%d&uid=%d", e.mailbox(e.alice, "INBOX").ID, fw[0].UID))
	if !strings.Contains(form, "Re: Fwd: Report") || !strings.Contains(form, `value="bob@example.test"`) || !strings.Contains(form, "&gt; fyi") {
		t.Errorf("reply form:\n%s", form)
	}
	if !strings.Contains(form, `name="in_reply_to" value="`+htmlEsc(fw[0].Info.Envelope.MessageID)) {
		t.Errorf("reply lacks In-Reply-To")
	}
}

func htmlEsc(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(s)
}

func TestSendErrors(t *testing.T) {
	e := newEnv(t, envOpts{maxBytes: 50_000})
	a := e.login(alice)
	cases := []struct {
		name   string
		fields map[string]string
		files  map[string][]byte
		want   string
	}{
		{"remote, relay off", map[string]string{"to": "carol@elsewhere.test"}, nil, "does not relay"},
		{"unknown local", map[string]string{"to": "nobody@example.test"}, nil, "no such user"},
		{"bad address", map[string]string{"to": "not an address"}, nil, "not a valid list"},
		{"no recipient", map[string]string{"to": ""}, nil, "at least one recipient"},
		{"not allowed from", map[string]string{"to": bob, "from": bob}, nil, "not allowed to send as"},
		{"too big", map[string]string{"to": bob}, map[string][]byte{"big.bin": randomBytes(60_000)}, "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.fields["action"] = "send"
			tc.fields["subject"] = "keep me"
			res, body := a.compose(tc.fields, tc.files)
			if res.StatusCode == http.StatusSeeOther {
				t.Fatalf("sent")
			}
			if !strings.Contains(body, tc.want) {
				t.Errorf("%s: page lacks %q:\n%s", res.Status, tc.want, body)
			}
			if !strings.Contains(body, `value="keep me"`) {
				t.Errorf("form input lost")
			}
		})
	}
	if n := len(e.messages(e.bob, "INBOX")); n != 0 {
		t.Errorf("bob got %d messages", n)
	}
	if n := len(e.messages(e.alice, "Sent")); n != 0 {
		t.Errorf("Sent has %d messages", n)
	}
}

func TestSendRemoteQueued(t *testing.T) {
	e := newEnv(t, envOpts{relay: true})
	a := e.login(alice)
	res, body := a.compose(map[string]string{"to": "carol@elsewhere.test", "cc": bob, "subject": "out", "body": "x", "action": "send"}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %s\n%s", res.Status, body)
	}
	q, err := e.st.ListQueue(context.Background())
	if err != nil || len(q) != 1 || q[0].Recipients[0].Address != "carol@elsewhere.test" || q[0].From != alice {
		t.Fatalf("queue = %+v, %v", q, err)
	}
	if len(e.messages(e.bob, "INBOX")) != 1 {
		t.Errorf("local Cc not delivered")
	}
	_, page := a.get("/admin")
	if !strings.Contains(page, "carol@elsewhere.test") {
		t.Errorf("queue not on the admin page")
	}
	_, page = a.get("/admin/queue/" + strconv.FormatInt(q[0].ID, 10))
	if !strings.Contains(page, "elsewhere.test") {
		t.Errorf("queue entry page:\n%s", page)
	}
	if res := a.post("/admin/queue-remove", url.Values{"id": {strconv.FormatInt(q[0].ID, 10)}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("queue remove: %s", res.Status)
	}
	if q, _ := e.st.ListQueue(context.Background()); len(q) != 0 {
		t.Errorf("queue entry not removed")
	}
}

func TestDraft(t *testing.T) {
	e := newEnv(t, envOpts{})
	a := e.login(alice)
	res, body := a.compose(map[string]string{"to": "someone@elsewhere.test", "bcc": bob, "subject": "later", "body": "draft text", "action": "draft"},
		map[string][]byte{"a.txt": []byte("attached")})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("draft: %s\n%s", res.Status, body)
	}
	drafts := e.messages(e.alice, "Drafts")
	if len(drafts) != 1 || !slices.Contains(drafts[0].Flags, store.FlagDraft) {
		t.Fatalf("Drafts = %+v", drafts)
	}
	dmb := e.mailbox(e.alice, "Drafts")
	_, form := a.get(fmt.Sprintf("/compose?mode=draft&mb=%d&uid=%d", dmb.ID, drafts[0].UID))
	for _, want := range []string{`value="someone@elsewhere.test"`, `value="bob@example.test"`, "draft text", `name="keep"`, `name="draft_uid"`} {
		if !strings.Contains(form, want) {
			t.Errorf("draft form lacks %q", want)
		}
	}
	// Sending the edited draft to a local user removes the draft.
	res, body = a.compose(map[string]string{"to": bob, "subject": "now", "body": "final", "action": "send", "mode": "draft",
		"source_mb": strconv.FormatInt(dmb.ID, 10), "source_uid": strconv.Itoa(int(drafts[0].UID)), "keep": "2",
		"draft_mb": strconv.FormatInt(dmb.ID, 10), "draft_uid": strconv.Itoa(int(drafts[0].UID))}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("send draft: %s\n%s", res.Status, body)
	}
	if n := len(e.messages(e.alice, "Drafts")); n != 0 {
		t.Errorf("%d drafts left", n)
	}
	got := e.messages(e.bob, "INBOX")
	if len(got) != 1 || len(attachments(&got[0].Info.Body)) != 1 {
		t.Fatalf("bob's INBOX = %+v", got)
	}
}

func TestListPagingSearchActions(t *testing.T) {
	e := newEnv(t, envOpts{})
	for i := range 120 {
		subj := fmt.Sprintf("message %03d", i)
		if i%40 == 0 {
			subj += " needle"
		}
		e.put(alice, "From: Sender <s"+strconv.Itoa(i)+"@other.test>\nSubject: "+subj+"\n\nbody\n")
	}
	a := e.login(alice)
	inbox := e.mailbox(e.alice, "INBOX")
	base := "/mailbox/" + strconv.FormatInt(inbox.ID, 10)
	_, p1 := a.get(base)
	if n := strings.Count(p1, `name="uid"`); n != 50 {
		t.Errorf("page 1 has %d rows", n)
	}
	if !strings.Contains(p1, "message 119") || strings.Contains(p1, "message 069") {
		t.Errorf("page 1 not newest first")
	}
	if !strings.Contains(p1, `120</span><span class="visually-hidden"> unread`) {
		t.Errorf("unread count not shown")
	}
	_, p3 := a.get(base + "?page=3")
	if n := strings.Count(p3, `name="uid"`); n != 20 || !strings.Contains(p3, "message 000") {
		t.Errorf("page 3 has %d rows", n)
	}
	_, asc := a.get(base + "?sort=date-asc")
	if i, j := strings.Index(asc, "message 000"), strings.Index(asc, "message 001"); i < 0 || j < i {
		t.Errorf("oldest first not sorted")
	}
	_, found := a.get(base + "?q=NEEDLE")
	if n := strings.Count(found, `name="uid"`); n != 3 {
		t.Errorf("search found %d, want 3", n)
	}
	_, found = a.get(base + "?q=s7%40other")
	if n := strings.Count(found, `name="uid"`); n != 1 {
		t.Errorf("search by from found %d, want 1", n)
	}

	ms := e.messages(e.alice, "INBOX")
	uids := url.Values{"uid": {strconv.Itoa(int(ms[0].UID)), strconv.Itoa(int(ms[1].UID))}}
	uids.Set("action", "read")
	a.post(base, uids)
	if st, _ := e.st.MailboxStatus(context.Background(), inbox.ID); st.Unseen != 118 {
		t.Errorf("unseen = %d after marking 2 read", st.Unseen)
	}
	uids.Set("action", "delete")
	a.post(base, uids)
	trash := e.messages(e.alice, "Trash")
	if len(trash) != 2 || len(e.messages(e.alice, "INBOX")) != 118 {
		t.Fatalf("delete did not move to Trash")
	}
	tmb := e.mailbox(e.alice, "Trash")
	a.post("/message/"+strconv.FormatInt(tmb.ID, 10)+"/"+strconv.Itoa(int(trash[0].UID)), url.Values{"action": {"delete"}})
	if n := len(e.messages(e.alice, "Trash")); n != 1 {
		t.Errorf("delete in Trash left %d", n)
	}
	arch := e.mailbox(e.alice, "Archive")
	a.post(base, url.Values{"uid": {strconv.Itoa(int(ms[5].UID))}, "action": {"move"}, "dest": {strconv.FormatInt(arch.ID, 10)}})
	if n := len(e.messages(e.alice, "Archive")); n != 1 {
		t.Errorf("move: Archive has %d", n)
	}
	// Another account's mailbox is not a move target.
	bobInbox := e.mailbox(e.bob, "INBOX")
	a.post(base, url.Values{"uid": {strconv.Itoa(int(ms[6].UID))}, "action": {"move"}, "dest": {strconv.FormatInt(bobInbox.ID, 10)}})
	if n := len(e.messages(e.bob, "INBOX")); n != 0 {
		t.Errorf("moved into another account's mailbox")
	}
	res, _ := a.get("/mailbox/" + strconv.FormatInt(bobInbox.ID, 10))
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("listing another account's mailbox: %s", res.Status)
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t, envOpts{})
	a := e.login(alice)
	req, _ := http.NewRequest("GET", e.ts.URL+"/events", nil)
	res := a.do(req)
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
		close(events)
	}()
	next := func() string {
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return ""
	}
	if ev := next(); !strings.Contains(ev, `"Name":"INBOX","Messages":0,"Unseen":0`) {
		t.Errorf("first event = %s", ev)
	}
	e.put(alice, "From: x@other.test\nSubject: live\n\nhi\n")
	if ev := next(); !strings.Contains(ev, `"Name":"INBOX","Messages":1,"Unseen":1`) {
		t.Errorf("event after delivery = %s", ev)
	}
	// Shutdown ends the stream and does not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
}

func TestAdmin(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.login(bob)
	if res, _ := b.get("/admin"); res.StatusCode != http.StatusForbidden {
		t.Errorf("non-admin GET /admin: %s", res.Status)
	}
	if res := b.post("/admin/domain-add", url.Values{"domain": {"evil.test"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("non-admin POST: %s", res.Status)
	}
	a := e.login(alice)
	_, page := a.get("/admin")
	if !strings.Contains(page, "example.test. MX 10 mail.example.test.") {
		t.Errorf("no DNS records on the admin page")
	}
	ctx := context.Background()
	steps := []struct {
		action string
		form   url.Values
		check  func() bool
	}{
		{"domain-add", url.Values{"domain": {"New.Test"}}, func() bool { _, err := e.st.GetDomain(ctx, "new.test"); return err == nil }},
		{"user-add", url.Values{"address": {"carol@new.test"}, "password": {"pw pw pw pw"}, "quota": {"5"}},
			func() bool {
				c, err := e.st.GetAccount(ctx, "carol@new.test")
				return err == nil && c.QuotaBytes == 5<<20
			}},
		{"user-quota", url.Values{"address": {"carol@new.test"}, "quota": {"0"}},
			func() bool { c, _ := e.st.GetAccount(ctx, "carol@new.test"); return c.QuotaBytes == 0 }},
		{"user-admin", url.Values{"address": {"carol@new.test"}, "admin": {"yes"}},
			func() bool { c, _ := e.st.GetAccount(ctx, "carol@new.test"); return c.Admin }},
		{"user-admin", url.Values{"address": {alice}, "admin": {"no"}},
			func() bool { c, _ := e.st.GetAccount(ctx, alice); return c.Admin }},
		{"alias-add", url.Values{"address": {"team@new.test"}, "targets": {"carol@new.test, bob@example.test"}, "sendas": {"on"}},
			func() bool {
				al, err := e.st.GetAlias(ctx, "team@new.test")
				return err == nil && al.SendAs && len(al.Targets) == 2
			}},
		{"alias-remove", url.Values{"address": {"team@new.test"}}, func() bool { _, err := e.st.GetAlias(ctx, "team@new.test"); return err != nil }},
		{"user-remove", url.Values{"address": {alice}}, func() bool { _, err := e.st.GetAccount(ctx, alice); return err == nil }},
		{"user-remove", url.Values{"address": {"carol@new.test"}}, func() bool { _, err := e.st.GetAccount(ctx, "carol@new.test"); return err != nil }},
		{"domain-remove", url.Values{"domain": {"new.test"}}, func() bool { _, err := e.st.GetDomain(ctx, "new.test"); return err != nil }},
	}
	for _, s := range steps {
		if res := a.post("/admin/"+s.action, s.form); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %s", s.action, res.Status)
		}
		if !s.check() {
			t.Errorf("%s %v: not done", s.action, s.form)
		}
	}
	// A failing action shows its reason.
	a.post("/admin/domain-add", url.Values{"domain": {"example.test"}})
	if _, page := a.get("/admin"); !strings.Contains(page, "already exists") {
		t.Errorf("no error shown for a duplicate domain")
	}
}

func TestSessionExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ss := newSessions(time.Hour, 3*time.Hour, 2, func() time.Time { return now })
	s1 := ss.create(1)
	now = now.Add(50 * time.Minute)
	if ss.get(s1.id) == nil {
		t.Fatal("session gone before idle timeout")
	}
	now = now.Add(61 * time.Minute)
	if ss.get(s1.id) != nil {
		t.Fatal("idle session still alive")
	}
	s2 := ss.create(2)
	for range 4 {
		now = now.Add(50 * time.Minute)
		ss.get(s2.id)
	}
	if ss.get(s2.id) != nil {
		t.Fatal("session alive past its lifetime")
	}
	a := ss.create(1)
	now = now.Add(time.Second)
	b := ss.create(2)
	now = now.Add(time.Second)
	c := ss.create(3)
	if ss.len() != 2 || ss.get(a.id) != nil || ss.get(b.id) == nil || ss.get(c.id) == nil {
		t.Errorf("bound not kept: %d sessions", ss.len())
	}
	if a.id == b.id || a.csrf == a.id {
		t.Errorf("tokens not random")
	}
}

func TestStaticAndHeaders(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	for _, p := range []string{"/static/app.js", "/static/style.css"} {
		res, body := c.get(p)
		if res.StatusCode != 200 || len(body) < 100 {
			t.Errorf("%s: %s", p, res.Status)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", p)
		}
	}
	res, _ := c.get("/login")
	if res.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options = %q", res.Header.Get("X-Frame-Options"))
	}
}

func TestOutgoingHeadersSafe(t *testing.T) {
	m := &outMessage{From: mustAddr(alice), Subject: "a\r\nBcc: victim@x.test", Body: "x", InReplyTo: "<a>\r\nX-Evil: 1",
		Date: time.Now(), MessageID: "<id@x>"}
	b := string(m.bytes(false))
	if strings.Contains(b, "\r\nBcc:") || strings.Contains(b, "\r\nX-Evil") {
		t.Errorf("header injection:\n%s", b)
	}
	_ = io.Discard
}

func TestBccHiddenAndTrace(t *testing.T) {
	e := newEnv(t, envOpts{})
	a := e.login(alice)
	res, body := a.compose(map[string]string{"to": bob, "bcc": alice, "subject": "secret cc", "body": "x", "action": "send"}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %s\n%s", res.Status, body)
	}
	read := func(m store.Message) string {
		blob, err := e.st.OpenBlob(context.Background(), m.BlobID)
		if err != nil {
			t.Fatal(err)
		}
		defer blob.Close()
		b := make([]byte, blob.Size())
		blob.ReadAt(b, 0)
		return string(b)
	}
	got := read(e.messages(e.bob, "INBOX")[0])
	if strings.Contains(got, "Bcc:") || strings.Contains(got, "alice@example.test>") && strings.Contains(got, "Bcc") {
		t.Errorf("delivered copy shows Bcc:\n%s", got)
	}
	if !strings.HasPrefix(got, "Return-Path: <alice@example.test>\r\nReceived: from webmail ([127.0.0.1])\r\n\tby mail.example.test (Tern webmail) id ") {
		t.Errorf("trace fields:\n%s", got)
	}
	if n := len(e.messages(e.alice, "INBOX")); n != 1 {
		t.Errorf("Bcc recipient got %d copies", n)
	}
	if sent := read(e.messages(e.alice, "Sent")[0]); !strings.Contains(sent, "Bcc: alice@example.test") {
		t.Errorf("Sent copy lacks Bcc:\n%s", sent)
	}
}

func TestConnLimitAndShutdown(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv, err := New(Config{Hostname: "mail.example.test", MaxConnsPerIP: 2},
		Deps{Store: e.st, Deliver: e.del, Auth: e.srv.auth, Accounts: e.srv.accounts})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The third connection is closed unanswered; the first two work.
	conns[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conns[2].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("third connection: read %d, %v; want EOF", n, err)
	}
	fmt.Fprintf(conns[0], "GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conns[0]), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first connection: %v %v", res, err)
	}
	// A connection that never sends a request is closed by Shutdown once
	// its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown = %v, want the deadline (an idle new connection)", err)
	}
	conns[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conns[1].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection after Shutdown: %v, want EOF", err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Errorf("Serve returned %v", err)
	}
}
