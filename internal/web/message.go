package web

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

type messageData struct {
	pageData
	Mailbox     store.Mailbox
	UID         uint32
	Env         msginfo.Envelope
	Subject     string
	Date        string
	Seen        bool
	Flagged     bool
	HTML        bool     // the body is shown in the iframe
	Texts       []string // the plain body, when not HTML
	FrameURL    string
	Remote      bool // the message references remote images
	ShowRemote  bool
	Attachments []attachment
	Others      []mailboxView
	IsDraft     bool
	IsTrash     bool
}

// messageURL is the relative URL of a message page.
func messageURL(mb int64, uid uint32) string {
	return "/message/" + strconv.FormatInt(mb, 10) + "/" + strconv.FormatUint(uint64(uid), 10)
}

// lookupMessage resolves the {mb}/{uid} of a request to a message of the
// user's own mailbox and opens its body; it writes the error page itself
// and returns ok=false on failure.
func (s *Server) lookupMessage(w http.ResponseWriter, r *http.Request, u *userCtx) (store.Mailbox, store.Message, store.BlobReader, bool) {
	ctx := r.Context()
	mb, err := s.findMailbox(ctx, u.acct.ID, r.PathValue("mb"))
	uid, perr := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if errors.Is(err, store.ErrNoSuchMailbox) || perr != nil {
		http.Error(w, "no such message", http.StatusNotFound)
		return mb, store.Message{}, nil, false
	} else if err != nil {
		s.serverError(w, r, "mailbox", err)
		return mb, store.Message{}, nil, false
	}
	m, blob, err := s.openMessage(ctx, mb.ID, uint32(uid))
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no such message", http.StatusNotFound)
		return mb, m, nil, false
	} else if err != nil {
		s.serverError(w, r, "open message", err)
		return mb, m, nil, false
	}
	return mb, m, blob, true
}

// readTexts decodes the display parts of a message.
func readTexts(blob io.ReaderAt, parts []displayPart) ([]string, error) {
	texts := make([]string, len(parts))
	for i, p := range parts {
		t, err := partText(blob, p.Part)
		if err != nil {
			return nil, err
		}
		texts[i] = t
	}
	return texts, nil
}

func (s *Server) messagePage(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	mb, m, blob, ok := s.lookupMessage(w, r, u)
	if !ok {
		return
	}
	defer blob.Close()
	if !slices.Contains(m.Flags, store.FlagSeen) {
		if _, _, err := s.st.StoreFlags(ctx, mb.ID, []uint32{m.UID}, store.FlagsAdd, []string{store.FlagSeen}, 0); err != nil {
			s.log.Warn("marking read", "err", err)
		}
	}
	parts := bodyParts(&m.Info.Body)
	texts, err := readTexts(blob, parts)
	if err != nil {
		s.serverError(w, r, "read message", err)
		return
	}
	p, err := s.page(ctx, u, decodeHeader(m.Info.Envelope.Subject), mb.ID)
	if err != nil {
		s.serverError(w, r, "message page", err)
		return
	}
	d := &messageData{
		pageData: p, Mailbox: mb, UID: m.UID, Env: m.Info.Envelope,
		Subject: decodeHeader(m.Info.Envelope.Subject),
		Seen:    true, Flagged: slices.Contains(m.Flags, store.FlagFlagged),
		ShowRemote:  r.URL.Query().Get("images") == "1",
		Attachments: attachments(&m.Info.Body),
		IsDraft:     mb.SpecialUse == store.SpecialDrafts,
		IsTrash:     mb.SpecialUse == store.SpecialTrash,
	}
	if d.Subject == "" {
		d.Subject = "(no subject)"
	}
	d.Title = d.Subject
	if !m.Info.Date.IsZero() {
		d.Date = m.Info.Date.Format("Mon, 2 Jan 2006 15:04 -0700")
	} else {
		d.Date = m.InternalDate.Format("Mon, 2 Jan 2006 15:04 -0700")
	}
	for i, dp := range parts {
		if dp.HTML {
			d.HTML = true
			if remoteRef.MatchString(texts[i]) {
				d.Remote = true
			}
		}
	}
	if d.HTML {
		d.FrameURL = messageURL(mb.ID, m.UID) + "/html"
		if d.ShowRemote {
			d.FrameURL += "?images=1"
		}
	} else {
		d.Texts = texts
	}
	for _, o := range p.Mailboxes {
		if o.ID != mb.ID {
			d.Others = append(d.Others, o)
		}
	}
	s.render(w, r, http.StatusOK, "message", d)
}

// messageHTML serves the message body for the sandboxed iframe, under its
// own CSP.
func (s *Server) messageHTML(w http.ResponseWriter, r *http.Request, u *userCtx) {
	_, m, blob, ok := s.lookupMessage(w, r, u)
	if !ok {
		return
	}
	defer blob.Close()
	parts := bodyParts(&m.Info.Body)
	texts, err := readTexts(blob, parts)
	if err != nil {
		s.serverError(w, r, "read message", err)
		return
	}
	remote := r.URL.Query().Get("images") == "1"
	doc := s.messageDocument(parts, texts, &m.Info.Body, blob, remote)
	h := w.Header()
	h.Set("Content-Security-Policy", messageCSP(remote))
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	io.WriteString(w, doc)
}

// partDownload sends one part, decoded, as an attachment. It is always
// application/octet-stream so that no browser renders it in our origin.
func (s *Server) partDownload(w http.ResponseWriter, r *http.Request, u *userCtx) {
	_, m, blob, ok := s.lookupMessage(w, r, u)
	if !ok {
		return
	}
	defer blob.Close()
	p, ok := partByPath(&m.Info.Body, r.PathValue("part"))
	if !ok || p.Type == "multipart" {
		http.Error(w, "no such part", http.StatusNotFound)
		return
	}
	name := partName(p)
	if name == "" {
		name = "part-" + r.PathValue("part")
		if p.Type == "message" {
			name += ".eml"
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Cache-Control", "private, no-store")
	if _, err := io.Copy(w, partReader(blob, p)); err != nil {
		s.log.Warn("attachment download", "err", err)
	}
}

// messageAction applies a message page's button.
func (s *Server) messageAction(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	mb, err := s.findMailbox(ctx, u.acct.ID, r.PathValue("mb"))
	uid, perr := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if errors.Is(err, store.ErrNoSuchMailbox) || perr != nil || uid == 0 {
		http.Error(w, "no such message", http.StatusNotFound)
		return
	} else if err != nil {
		s.serverError(w, r, "mailbox", err)
		return
	}
	action := r.PostFormValue("action")
	back := messageURL(mb.ID, uint32(uid))
	if action == "delete" || action == "move" || action == "unread" {
		back = mailboxURL(mb.ID, "", "", 1)
	}
	msg, err := s.apply(ctx, u, mb, []uint32{uint32(uid)}, action, r.PostFormValue("dest"))
	if err != nil {
		s.actionError(w, r, u, back, err)
		return
	}
	u.sess.setFlash(msg, false)
	http.Redirect(w, r, back, http.StatusSeeOther)
}
