package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// messageRow is one line of a message list.
type messageRow struct {
	UID     uint32
	From    string
	To      string
	Subject string
	Date    time.Time
	Size    int64
	Seen    bool
	Flagged bool
	Preview string
	Attach  bool
}

type mailboxData struct {
	pageData
	Mailbox    store.Mailbox
	Rows       []messageRow
	Query      string
	Sort       string
	Page       int
	Pages      int
	Total      int
	PrevURL    string
	NextURL    string
	Others     []mailboxView // move targets
	IsTrash    bool
	IsSentLike bool
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, u *userCtx) {
	inbox, err := s.st.GetMailbox(r.Context(), u.acct.ID, "INBOX")
	if err != nil {
		s.serverError(w, r, "inbox", err)
		return
	}
	http.Redirect(w, r, mailboxURL(inbox.ID, "", "", 1), http.StatusSeeOther)
}

// mailboxURL builds the relative URL of a list page; every redirect this
// door sends is built here or from IDs, never from client input.
func mailboxURL(id int64, q, sort string, page int) string {
	v := url.Values{}
	if q != "" {
		v.Set("q", q)
	}
	if sort != "" && sort != "date" {
		v.Set("sort", sort)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	u := "/mailbox/" + strconv.FormatInt(id, 10)
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

// getBatch bounds the UIDs asked of GetMessages at once.
const getBatch = 500

// loadMessages returns every message of a mailbox with its parsed info,
// by UID. Only search needs them all: decoding each message's parsed
// info costs some 15 µs, 75 ms for 5,000 messages (BenchmarkMailboxPage),
// bearable for a search but not for every page.
func (s *Server) loadMessages(ctx context.Context, mailboxID int64) ([]store.Message, error) {
	metas, err := s.st.ListMessages(ctx, mailboxID)
	if err != nil {
		return nil, err
	}
	uids := make([]uint32, len(metas))
	for i, m := range metas {
		uids[i] = m.UID
	}
	var out []store.Message
	for len(uids) > 0 {
		n := min(len(uids), getBatch)
		ms, err := s.st.GetMessages(ctx, mailboxID, uids[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
		uids = uids[n:]
	}
	return out, nil
}

// listing is one page of a message list.
type listing struct {
	Rows        []store.Message
	Total       int // messages listed, over all pages
	Page, Pages int
}

// listPage returns one page of a mailbox in arrival order: UIDs
// ascending for "date-asc", descending (newest first) otherwise.
//
// Arrival order is the order IMAP clients show by default, and it is the
// one order the store gives without reading every message: ListMessages
// yields the UIDs from the index (about 0.5 µs a message), and only the
// page's 50 messages are read and decoded by GetMessages, so the costly
// part no longer grows with the mailbox. It differs from INTERNALDATE
// order only for messages moved in or appended with an older date, which
// show where they arrived. A search still reads every message's envelope
// to match it; an order by another column would have to as well.
func (s *Server) listPage(ctx context.Context, mailboxID int64, q, sortKey string, page int) (listing, error) {
	var uids []uint32
	var found []store.Message
	if q == "" {
		metas, err := s.st.ListMessages(ctx, mailboxID)
		if err != nil {
			return listing{}, err
		}
		uids = make([]uint32, len(metas))
		for i, m := range metas {
			uids[i] = m.UID
		}
	} else {
		all, err := s.loadMessages(ctx, mailboxID)
		if err != nil {
			return listing{}, err
		}
		found = slices.DeleteFunc(all, func(m store.Message) bool { return !matches(m, q) })
		uids = make([]uint32, len(found))
		for i, m := range found {
			uids[i] = m.UID
		}
	}
	newest := sortKey != "date-asc"
	if newest {
		slices.Reverse(uids)
		slices.Reverse(found)
	}
	l := listing{Total: len(uids), Pages: max((len(uids)+pageSize-1)/pageSize, 1)}
	l.Page = min(max(page, 1), l.Pages)
	lo := (l.Page - 1) * pageSize
	hi := min(lo+pageSize, len(uids))
	if found != nil {
		l.Rows = found[lo:hi]
		return l, nil
	}
	want := slices.Clone(uids[lo:hi])
	slices.Sort(want) // the store takes UIDs ascending
	ms, err := s.st.GetMessages(ctx, mailboxID, want)
	if err != nil {
		return listing{}, err
	}
	if newest {
		slices.Reverse(ms)
	}
	l.Rows = ms
	return l, nil
}

func (s *Server) mailboxPage(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	mb, err := s.findMailbox(ctx, u.acct.ID, r.PathValue("mb"))
	if errors.Is(err, store.ErrNoSuchMailbox) {
		s.errorPage(w, r, u, http.StatusNotFound, "No such mailbox.")
		return
	} else if err != nil {
		s.serverError(w, r, "mailbox", err)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	sortKey := r.URL.Query().Get("sort")
	if sortKey != "date-asc" {
		sortKey = "date"
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))

	l, err := s.listPage(ctx, mb.ID, q, sortKey, page)
	if err != nil {
		s.serverError(w, r, "list messages", err)
		return
	}
	p, err := s.page(ctx, u, mb.Name, mb.ID)
	if err != nil {
		s.serverError(w, r, "mailbox page", err)
		return
	}
	d := &mailboxData{pageData: p, Mailbox: mb, Query: q, Sort: sortKey, Page: l.Page, Pages: l.Pages, Total: l.Total,
		IsTrash: mb.SpecialUse == store.SpecialTrash, IsSentLike: mb.SpecialUse == store.SpecialSent || mb.SpecialUse == store.SpecialDrafts}
	for _, m := range l.Rows {
		d.Rows = append(d.Rows, rowOf(m))
	}
	for _, o := range p.Mailboxes {
		if o.ID != mb.ID {
			d.Others = append(d.Others, o)
		}
	}
	if l.Page > 1 {
		d.PrevURL = mailboxURL(mb.ID, q, sortKey, l.Page-1)
	}
	if l.Page < l.Pages {
		d.NextURL = mailboxURL(mb.ID, q, sortKey, l.Page+1)
	}
	s.render(w, r, http.StatusOK, "mailbox", d)
}

func rowOf(m store.Message) messageRow {
	row := messageRow{UID: m.UID, Date: m.InternalDate, Size: m.Size,
		Seen: slices.Contains(m.Flags, store.FlagSeen), Flagged: slices.Contains(m.Flags, store.FlagFlagged)}
	if m.Info != nil {
		env := m.Info.Envelope
		row.From = formatAddrs(env.From)
		row.To = formatAddrs(env.To)
		row.Subject = decodeHeader(env.Subject)
		row.Preview = m.Info.Preview
		row.Attach = len(attachments(&m.Info.Body)) > 0
	}
	if row.Subject == "" {
		row.Subject = "(no subject)"
	}
	return row
}

// matches is the simple search: every word of q must appear in the
// subject, the From or To addresses, case-insensitively.
func matches(m store.Message, q string) bool {
	if m.Info == nil {
		return false
	}
	env := m.Info.Envelope
	hay := strings.ToLower(decodeHeader(env.Subject) + "\n" + formatAddrs(env.From) + "\n" + formatAddrs(env.To))
	for _, w := range strings.Fields(strings.ToLower(q)) {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

// parseUIDs reads the checked messages of a list form.
func parseUIDs(vals []string) []uint32 {
	var uids []uint32
	for _, v := range vals {
		n, err := strconv.ParseUint(v, 10, 32)
		if err == nil && n > 0 {
			uids = append(uids, uint32(n))
		}
	}
	slices.Sort(uids)
	return slices.Compact(uids)
}

// mailboxAction applies a list form's action to the checked messages.
func (s *Server) mailboxAction(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	mb, err := s.findMailbox(ctx, u.acct.ID, r.PathValue("mb"))
	if errors.Is(err, store.ErrNoSuchMailbox) {
		http.Error(w, "no such mailbox", http.StatusNotFound)
		return
	} else if err != nil {
		s.serverError(w, r, "mailbox", err)
		return
	}
	uids := parseUIDs(r.PostForm["uid"])
	back := mailboxURL(mb.ID, r.PostFormValue("q"), r.PostFormValue("sort"), atoiOr(r.PostFormValue("page"), 1))
	if len(uids) == 0 {
		u.sess.setFlash("Select at least one message first.", true)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	msg, err := s.apply(ctx, u, mb, uids, r.PostFormValue("action"), r.PostFormValue("dest"))
	if err != nil {
		s.actionError(w, r, u, back, err)
		return
	}
	u.sess.setFlash(msg, false)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// errBadAction is a form asking for something that does not exist.
var errBadAction = errors.New("unknown action")

func (s *Server) actionError(w http.ResponseWriter, r *http.Request, u *userCtx, back string, err error) {
	var ue *userError
	switch {
	case errors.As(err, &ue):
		u.sess.setFlash(ue.msg, true)
	case errors.Is(err, errBadAction), errors.Is(err, store.ErrNoSuchMailbox):
		u.sess.setFlash("That action is not possible.", true)
	case errors.Is(err, store.ErrQuota):
		u.sess.setFlash("Your mailbox is full (quota exceeded).", true)
	default:
		s.log.Error("web action", "user", u.acct.Address, "err", err)
		u.sess.setFlash("The action failed; try again later.", true)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// apply runs one message action on uids of mb and returns a notice.
func (s *Server) apply(ctx context.Context, u *userCtx, mb store.Mailbox, uids []uint32, action, dest string) (string, error) {
	flag := func(op store.FlagOp, f, done string) (string, error) {
		_, _, err := s.st.StoreFlags(ctx, mb.ID, uids, op, []string{f}, 0)
		return done, err
	}
	switch action {
	case "read":
		return flag(store.FlagsAdd, store.FlagSeen, "Marked as read.")
	case "unread":
		return flag(store.FlagsRemove, store.FlagSeen, "Marked as unread.")
	case "flag":
		return flag(store.FlagsAdd, store.FlagFlagged, "Flagged.")
	case "unflag":
		return flag(store.FlagsRemove, store.FlagFlagged, "Flag removed.")
	case "move":
		if dest == "" {
			return "", &userError{"Choose a mailbox to move to."}
		}
		dst, err := s.findMailbox(ctx, u.acct.ID, dest)
		if err != nil {
			return "", err
		}
		if dst.ID == mb.ID {
			return "Nothing to move.", nil
		}
		_, _, err = s.st.Move(ctx, mb.ID, uids, dst.ID)
		return "Moved to " + dst.Name + ".", err
	case "delete":
		// Deleting from Trash removes for good; elsewhere it moves to
		// Trash.
		if mb.SpecialUse == store.SpecialTrash {
			_, err := s.st.Expunge(ctx, mb.ID, uids)
			return "Deleted for good.", err
		}
		trash, err := s.specialMailbox(ctx, u.acct.ID, store.SpecialTrash, "Trash")
		if err != nil {
			return "", err
		}
		_, _, err = s.st.Move(ctx, mb.ID, uids, trash.ID)
		return "Moved to Trash.", err
	}
	return "", errBadAction
}

// counts answers the script's refresh with the navigation's counts.
func (s *Server) counts(w http.ResponseWriter, r *http.Request, u *userCtx) {
	mbs, err := s.mailboxViews(r.Context(), u.acct.ID)
	if err != nil {
		s.serverError(w, r, "counts", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(mbs)
}
