package web

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

// pageData is what the layout needs on every page.
type pageData struct {
	Title     string
	User      string
	Admin     bool
	CSRF      string
	Mailboxes []mailboxView
	Folders   []*folderNode // Mailboxes as a hierarchy, for the navigation
	Current   int64         // the mailbox shown, for the navigation
	Flash     flash
	Used      int64 // bytes the account's messages take
	Quota     int64 // 0: none
}

// mailboxView is one entry of the mailbox navigation.
type mailboxView struct {
	ID       int64
	Name     string
	Messages int
	Unseen   int
	// SpecialUse orders and protects folders; the script does not need
	// it.
	SpecialUse string `json:"-"`
}

var pages = []string{"login", "mailbox", "message", "compose", "admin", "queue", "error", "folders", "folderdelete"}

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"addrs":    formatAddrs,
		"addr":     formatAddr,
		"size":     formatSize,
		"date":     formatDate,
		"fulldate": func(t time.Time) string { return t.Format("Mon, 2 Jan 2006 15:04 MST") },
		"has":      func(flags []string, f string) bool { return slices.Contains(flags, f) },
		"pathesc":  url.PathEscape,
		"level":    func(csrf string, ns []*folderNode) folderLevel { return folderLevel{csrf, ns} },
	}
	out := map[string]*template.Template{}
	for _, p := range pages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("web: templates: %w", err)
		}
		out[p] = t
	}
	return out, nil
}

// page fills the layout data of a logged-in user's page.
func (s *Server) page(ctx context.Context, u *userCtx, title string, current int64) (pageData, error) {
	mbs, err := s.mailboxViews(ctx, u.acct.ID)
	if err != nil {
		return pageData{}, err
	}
	return pageData{
		Title: title, User: u.acct.Address, Admin: u.acct.Admin, CSRF: u.sess.csrf,
		Mailboxes: mbs, Folders: folderTree(mbs, current), Current: current, Flash: u.sess.popFlash(),
		Used: u.acct.UsedBytes, Quota: u.acct.QuotaBytes,
	}, nil
}

func (s *Server) mailboxViews(ctx context.Context, accountID int64) ([]mailboxView, error) {
	mbs, err := s.st.ListMailboxes(ctx, accountID)
	if err != nil {
		return nil, err
	}
	out := make([]mailboxView, 0, len(mbs))
	for _, mb := range mbs {
		st, err := s.st.MailboxStatus(ctx, mb.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, mailboxView{ID: mb.ID, Name: mb.Name, Messages: st.Messages, Unseen: st.Unseen, SpecialUse: mb.SpecialUse})
	}
	return out, nil
}

// render executes a page into a buffer first, so a template error is a
// clean 500 and not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	if err := s.tmpl[name].Execute(&buf, data); err != nil {
		s.serverError(w, r, "rendering "+name, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// serverError logs err and answers with a generic 500: clients never see
// paths or SQL.
func (s *Server) serverError(w http.ResponseWriter, r *http.Request, op string, err error) {
	if r.Context().Err() != nil {
		return
	}
	s.log.Error("web", "op", op, "path", r.URL.Path, "err", err)
	http.Error(w, "internal server error", http.StatusInternalServerError)
}

// errorPage shows a user-facing error inside the layout.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, u *userCtx, code int, msg string) {
	p, err := s.page(r.Context(), u, "Error", 0)
	if err != nil {
		s.serverError(w, r, "error page", err)
		return
	}
	s.render(w, r, code, "error", &struct {
		pageData
		Message string
	}{p, msg})
}

func formatAddr(a msginfo.Address) string {
	email := a.Mailbox
	if a.Host != "" {
		email += "@" + a.Host
	}
	if a.Name != "" {
		return a.Name + " <" + email + ">"
	}
	return email
}

// formatAddrs shows an address list; short lists names only.
func formatAddrs(list []msginfo.Address) string {
	var parts []string
	for _, a := range list {
		if a.Host == "" && a.Mailbox == "" {
			continue // group end
		}
		parts = append(parts, formatAddr(a))
	}
	return strings.Join(parts, ", ")
}

func formatSize(n int64) string {
	switch {
	case n < 1<<10:
		return strconv.FormatInt(n, 10) + " B"
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

// formatDate shows today's messages by time, older ones by date.
func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	now := time.Now()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04")
	}
	if t.Year() == now.Year() {
		return t.Format("2 Jan")
	}
	return t.Format("2 Jan 2006")
}

// addrEmail is the bare address of a parsed address.
func addrEmail(a msginfo.Address) string {
	if a.Host == "" {
		return a.Mailbox
	}
	return a.Mailbox + "@" + a.Host
}

// findMailbox returns the account's mailbox with this ID; another
// account's ID is "not found", never a leak.
func (s *Server) findMailbox(ctx context.Context, accountID int64, idText string) (store.Mailbox, error) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return store.Mailbox{}, store.ErrNoSuchMailbox
	}
	mbs, err := s.st.ListMailboxes(ctx, accountID)
	if err != nil {
		return store.Mailbox{}, err
	}
	for _, mb := range mbs {
		if mb.ID == id {
			return mb, nil
		}
	}
	return store.Mailbox{}, store.ErrNoSuchMailbox
}

// specialMailbox returns the account's mailbox with a special use, or the
// default name's mailbox.
func (s *Server) specialMailbox(ctx context.Context, accountID int64, use, name string) (store.Mailbox, error) {
	mbs, err := s.st.ListMailboxes(ctx, accountID)
	if err != nil {
		return store.Mailbox{}, err
	}
	for _, mb := range mbs {
		if mb.SpecialUse == use {
			return mb, nil
		}
	}
	return s.st.GetMailbox(ctx, accountID, name)
}
