package web

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/store"
)

var flashRE = regexp.MustCompile(`<p class="flash( error)?" role="(?:alert|status)">([^<]*)</p>`)

// flash posts a form and returns the notice the next page shows, and
// whether it is an error.
func (c *client) flash(path string, v url.Values) (string, bool) {
	c.e.t.Helper()
	if res := c.post(path, v); res.StatusCode != http.StatusSeeOther {
		c.e.t.Fatalf("POST %s: %s", path, res.Status)
	}
	next := "/folders"
	if strings.HasPrefix(path, "/admin") {
		next = "/admin"
	}
	_, page := c.get(next)
	m := flashRE.FindStringSubmatch(page)
	if m == nil {
		c.e.t.Fatalf("POST %s %v: no notice on the next page", path, v)
	}
	return html.UnescapeString(m[2]), m[1] != ""
}

// names returns the account's mailbox names, sorted.
func (e *env) names(acct store.Account) []string {
	e.t.Helper()
	mbs, err := e.st.ListMailboxes(context.Background(), acct.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, mb := range mbs {
		out = append(out, mb.Name)
	}
	slices.Sort(out)
	return out
}

func id(mb store.Mailbox) string { return strconv.FormatInt(mb.ID, 10) }

func TestFolderCreate(t *testing.T) {
	e := newEnv(t, envOpts{})
	a := e.login(alice)
	ok := []struct {
		name, parent, want string
	}{
		{"Work", "", "Work"},
		{" Projects ", "Work", "Work/Projects"},
		{"Deep/Er/Est/", "", "Deep/Er/Est"}, // parents made, trailing "/" dropped as IMAP CREATE does
		{"Receipts", "INBOX", "INBOX/Receipts"},
		{"inbox/Old", "", "INBOX/Old"},
		{"Café ✓", "", "Café ✓"},
	}
	for _, c := range ok {
		v := url.Values{"name": {c.name}}
		if c.parent != "" {
			v.Set("parent", id(e.mailbox(e.alice, c.parent)))
		}
		if msg, isErr := a.flash("/folders/create", v); isErr || msg != "Folder “"+c.want+"” created." {
			t.Errorf("create %q in %q: %q", c.name, c.parent, msg)
		}
		e.mailbox(e.alice, c.want)
	}
	for _, parent := range []string{"Deep", "Deep/Er"} {
		e.mailbox(e.alice, parent)
	}

	before := e.names(e.alice)
	bad := []struct {
		name, parent, want string
	}{
		{"", "", "Enter a folder name."},
		{"  ", "Work", "Enter a folder name."},
		{"inbox", "", "INBOX always exists."},
		{"Work", "", "A folder named “Work” already exists."},
		{"Projects", "Work", "A folder named “Work/Projects” already exists."},
		{"a//b", "", "each level needs a name"},
		{"/top", "", "each level needs a name"},
		{"star*", "", "cannot contain control characters, “*” or “%”"},
		{"50%", "", "cannot contain control characters"},
		{"tab\there", "", "cannot contain control characters"},
		{strings.Repeat("x", 256), "", "at most 255 bytes"},
		{strings.Repeat("x", 251), "Work", "at most 255 bytes"},
		{strings.Repeat("d/", 16) + "d", "", "at most 16 levels deep"},
		{"x", id(e.mailbox(e.bob, "INBOX")), "does not exist"}, // another account's mailbox
		{"x", "nonsense", "does not exist"},
	}
	for _, c := range bad {
		v := url.Values{"name": {c.name}}
		if c.parent != "" {
			p := c.parent
			if _, err := strconv.Atoi(p); err != nil && p != "nonsense" {
				p = id(e.mailbox(e.alice, p))
			}
			v.Set("parent", p)
		}
		if msg, isErr := a.flash("/folders/create", v); !isErr || !strings.Contains(msg, c.want) {
			t.Errorf("create %.40q in %q: %q, error %v; want %q", c.name, c.parent, msg, isErr, c.want)
		}
	}
	if after := e.names(e.alice); !slices.Equal(before, after) {
		t.Errorf("refused creations changed the mailboxes:\n%v\n%v", before, after)
	}
	if got := e.names(e.bob); len(got) != len(store.DefaultMailboxes) {
		t.Errorf("bob's mailboxes changed: %v", got)
	}
}

// navRE finds the navigation's links: the full name and the level shown.
var navRE = regexp.MustCompile(`<a href="/mailbox/\d+" data-mailbox="\d+" title="([^"]*)"[^>]*>([^\n<]*)`)

func TestFolderHierarchyShown(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for _, n := range []string{"zeta", "Work/Projects/2024", "Work", "alpha", "Work/Admin"} {
		if _, err := e.st.CreateMailbox(ctx, e.alice.ID, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	a := e.login(alice)
	_, page := a.get("/folders")
	nav := page[strings.Index(page, `<nav aria-label="Mailboxes"`):strings.Index(page, "</nav>")]
	var got []string
	for _, m := range navRE.FindAllStringSubmatch(nav, -1) {
		got = append(got, m[1]+"="+m[2])
	}
	// INBOX, the special-use folders as made, then the rest by name;
	// "Work/Projects" was never made, so it shows unlinked.
	want := []string{"INBOX=INBOX", "Sent=Sent", "Drafts=Drafts", "Trash=Trash", "Junk=Junk", "Archive=Archive",
		"alpha=alpha", "Work=Work", "Work/Admin=Admin", "Work/Projects/2024=2024", "zeta=zeta"}
	if !slices.Equal(got, want) {
		t.Errorf("navigation:\n got %v\nwant %v", got, want)
	}
	work := nav[strings.Index(nav, `title="Work"`):]
	if i, j := strings.Index(work, "<ul>"), strings.Index(work, `title="Work/Admin"`); i < 0 || j < i {
		t.Errorf("Work's children are not nested under it:\n%s", nav)
	}
	if !strings.Contains(nav, `<span class="noselect">Projects</span>`) {
		t.Errorf("the missing level Work/Projects is not shown:\n%s", nav)
	}
	// The folders page offers rename and delete for ordinary folders
	// only.
	for _, n := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} {
		if strings.Contains(page, "/folders/"+id(e.mailbox(e.alice, n))+"/") {
			t.Errorf("the folders page offers to change %s", n)
		}
	}
	if !strings.Contains(page, `action="/folders/`+id(e.mailbox(e.alice, "Work/Admin"))+`/rename"`) {
		t.Errorf("no rename form for Work/Admin")
	}
}

func TestFolderRename(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for _, n := range []string{"Work", "Work/Projects", "Work/Projects/2024", "Workshop", "Other", "Team", "Team/Sent"} {
		use := ""
		if n == "Team/Sent" {
			use = store.SpecialSent
		}
		if _, err := e.st.CreateMailbox(ctx, e.alice.ID, n, use); err != nil {
			t.Fatal(err)
		}
	}
	e.put(alice, "From: x@other.test\nSubject: filed\n\nbody\n")
	inbox, proj := e.mailbox(e.alice, "INBOX"), e.mailbox(e.alice, "Work/Projects")
	if _, _, err := e.st.Move(ctx, inbox.ID, []uint32{e.messages(e.alice, "INBOX")[0].UID}, proj.ID); err != nil {
		t.Fatal(err)
	}
	a := e.login(alice)
	work := e.mailbox(e.alice, "Work")
	rename := func(from, to string) (string, bool) {
		return a.flash("/folders/"+id(e.mailbox(e.alice, from))+"/rename", url.Values{"name": {to}})
	}
	if msg, isErr := rename("Work", "Job"); isErr || msg != "Folder “Work” renamed to “Job”." {
		t.Fatalf("rename: %q", msg)
	}
	// The children moved along, with their IDs and messages.
	if mb := e.mailbox(e.alice, "Job"); mb.ID != work.ID {
		t.Errorf("Job has ID %d, Work had %d", mb.ID, work.ID)
	}
	if mb := e.mailbox(e.alice, "Job/Projects"); mb.ID != proj.ID || len(e.messages(e.alice, "Job/Projects")) != 1 {
		t.Errorf("Work/Projects did not move with its message")
	}
	e.mailbox(e.alice, "Job/Projects/2024")
	if _, err := e.st.GetMailbox(ctx, e.alice.ID, "Workshop"); err != nil {
		t.Errorf("Workshop, a sibling with the same prefix, moved: %v", err)
	}
	// Moving into a new parent creates it, as IMAP CREATE would.
	if msg, isErr := rename("Job/Projects", "Archive/2025/Projects"); isErr {
		t.Fatalf("move: %q", msg)
	}
	e.mailbox(e.alice, "Archive/2025")
	e.mailbox(e.alice, "Archive/2025/Projects/2024")

	before := e.names(e.alice)
	for _, c := range []struct{ from, to, want string }{
		{"INBOX", "Mail", "“INBOX” is a special folder and cannot be renamed."},
		{"Sent", "Sent mail", "“Sent” is a special folder"},
		{"Drafts", "D", "special folder"},
		{"Trash", "T", "special folder"},
		{"Junk", "Spam", "special folder"},
		{"Team", "Group", "“Team” contains the special folder “Team/Sent”"},
		{"Job", "inbox", "INBOX always exists."},
		{"Job", "Other", "A folder named “Other” already exists."},
		{"Job", "Job", "is already the folder's name"},
		{"Job", "Job/Sub", "cannot be moved into itself"},
		{"Job", "", "Enter a folder name."},
		{"Job", "a//b", "each level needs a name"},
		{"Job", "x%", "cannot contain"},
		{"Job", strings.Repeat("x", 256), "at most 255 bytes"},
		{"Archive/2025", strings.Repeat("y", 250), "subfolder would become"},
		{"Archive/2025", strings.Repeat("d/", 14) + "d", "subfolder would become"},
	} {
		if msg, isErr := rename(c.from, c.to); !isErr || !strings.Contains(msg, c.want) {
			t.Errorf("rename %s to %.40q: %q, error %v; want %q", c.from, c.to, msg, isErr, c.want)
		}
	}
	if msg, _ := a.flash("/folders/"+id(e.mailbox(e.bob, "INBOX"))+"/rename", url.Values{"name": {"Stolen"}}); !strings.Contains(msg, "does not exist") {
		t.Errorf("renaming another account's mailbox: %q", msg)
	}
	if after := e.names(e.alice); !slices.Equal(before, after) {
		t.Errorf("refused renames changed the mailboxes:\n%v\n%v", before, after)
	}
	if _, err := e.st.GetMailbox(ctx, e.bob.ID, "INBOX"); err != nil {
		t.Errorf("bob's INBOX: %v", err)
	}
}

func TestFolderDelete(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for _, n := range []string{"Old", "Old/Keep"} {
		if _, err := e.st.CreateMailbox(ctx, e.alice.ID, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		e.put(alice, "From: x@other.test\nSubject: old\n\nbody\n")
	}
	inbox, old := e.mailbox(e.alice, "INBOX"), e.mailbox(e.alice, "Old")
	var uids []uint32
	for _, m := range e.messages(e.alice, "INBOX") {
		uids = append(uids, m.UID)
	}
	if _, _, err := e.st.Move(ctx, inbox.ID, uids, old.ID); err != nil {
		t.Fatal(err)
	}
	a := e.login(alice)
	path := "/folders/" + id(old) + "/delete"

	_, page := a.get("/folders")
	if !strings.Contains(page, `href="`+path+`"`) {
		t.Errorf("no delete link for Old")
	}
	res, page := a.get(path)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "Delete folder “Old”?") || !strings.Contains(page, "The 3 messages in it will be deleted for good.") ||
		!strings.Contains(page, "<li>Old/Keep</li>") || !strings.Contains(page, `name="confirm" value="yes"`) {
		t.Fatalf("confirmation page: %s\n%s", res.Status, page)
	}
	// A POST that skipped the confirmation is sent to it.
	res = a.post(path, url.Values{})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != path {
		t.Errorf("unconfirmed delete: %s to %q", res.Status, res.Header.Get("Location"))
	}
	e.mailbox(e.alice, "Old")

	if msg, isErr := a.flash(path, url.Values{"confirm": {"yes"}}); isErr || msg != "Folder “Old” deleted." {
		t.Errorf("delete: %q", msg)
	}
	if _, err := e.st.GetMailbox(ctx, e.alice.ID, "Old"); err == nil {
		t.Errorf("Old still exists")
	}
	e.mailbox(e.alice, "Old/Keep")
	if st, _ := e.st.MailboxStatus(ctx, inbox.ID); st.Messages != 0 {
		t.Errorf("INBOX has %d messages", st.Messages)
	}
	_, page = a.get("/folders")
	if !strings.Contains(page, `<span class="noselect">Old</span>`) {
		t.Errorf("the kept child's parent level is not shown")
	}

	before := e.names(e.alice)
	for _, n := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} {
		p := "/folders/" + id(e.mailbox(e.alice, n)) + "/delete"
		want := "“" + n + "” is a special folder and cannot be deleted."
		if msg, isErr := a.flash(p, url.Values{"confirm": {"yes"}}); !isErr || msg != want {
			t.Errorf("delete %s: %q", n, msg)
		}
		if _, page := a.get(p); !strings.Contains(page, html.EscapeString(want)) || strings.Contains(page, `name="confirm"`) {
			t.Errorf("confirmation page for %s does not refuse", n)
		}
	}
	p := "/folders/" + id(e.mailbox(e.bob, "Junk")) + "/delete"
	if msg, _ := a.flash(p, url.Values{"confirm": {"yes"}}); !strings.Contains(msg, "does not exist") {
		t.Errorf("deleting another account's mailbox: %q", msg)
	}
	if after := e.names(e.alice); !slices.Equal(before, after) {
		t.Errorf("refused deletions changed the mailboxes:\n%v\n%v", before, after)
	}
	if n := len(e.names(e.bob)); n != len(store.DefaultMailboxes) {
		t.Errorf("bob has %d mailboxes", n)
	}
}

func TestFolderCSRF(t *testing.T) {
	e := newEnv(t, envOpts{})
	if _, err := e.st.CreateMailbox(context.Background(), e.alice.ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	a := e.login(alice)
	other := e.login(alice)
	work := id(e.mailbox(e.alice, "Work"))
	before := e.names(e.alice)
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/folders/create", url.Values{"name": {"Evil"}}},
		{"/folders/" + work + "/rename", url.Values{"name": {"Evil"}}},
		{"/folders/" + work + "/delete", url.Values{"confirm": {"yes"}}},
	} {
		for _, token := range []string{"", "forged", other.csrf} {
			form := url.Values{}
			for k, v := range c.form {
				form[k] = v
			}
			if token != "" {
				form.Set("csrf", token)
			}
			if res := a.postForm(c.path, form); res.StatusCode != http.StatusForbidden {
				t.Errorf("%s with token %.8q: %s", c.path, token, res.Status)
			}
		}
	}
	if after := e.names(e.alice); !slices.Equal(before, after) {
		t.Errorf("a refused POST changed the mailboxes: %v", after)
	}
	if res := e.client().postForm("/folders/create", url.Values{"name": {"Evil"}}); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("create without a session: %s", res.Status)
	}
}
