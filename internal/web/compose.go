package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
)

// composeForm is what the compose page shows and posts back.
type composeForm struct {
	From, To, Cc, Bcc, Subject, Body string
	InReplyTo, References            string
	Mode                             string // "", reply, replyall, forward, draft
	// Source is the message whose attachments may be kept (forward,
	// draft being edited), as mailbox ID and UID.
	SourceMB  int64
	SourceUID uint32
	Keep      []keptAttachment
	// DraftMB/DraftUID is the draft this form replaces once sent or saved.
	DraftMB  int64
	DraftUID uint32
}

type keptAttachment struct {
	attachment
	Checked bool
}

type composeData struct {
	pageData
	Form     composeForm
	Froms    []string
	Error    string
	MaxSize  string
	MaxBytes int64
}

// sendAddresses lists the addresses the user may send as: their own and
// the aliases of their domain that grant SendAs to them.
func (s *Server) sendAddresses(ctx context.Context, acct store.Account) []string {
	out := []string{acct.Address}
	_, domain, err := accounts.SplitAddress(acct.Address)
	if err != nil {
		return out
	}
	als, err := s.st.ListAliases(ctx, domain)
	if err != nil {
		s.log.Warn("listing aliases", "err", err)
		return out
	}
	for _, al := range als {
		if al.SendAs && slices.Contains(al.Targets, acct.Address) {
			out = append(out, al.Address)
		}
	}
	return out
}

func (s *Server) composePage(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	q := r.URL.Query()
	f := composeForm{Mode: q.Get("mode"), From: u.acct.Address, To: q.Get("to")}
	if f.Mode != "" {
		mb, err := s.findMailbox(ctx, u.acct.ID, q.Get("mb"))
		uid, perr := strconv.ParseUint(q.Get("uid"), 10, 32)
		if err != nil || perr != nil {
			s.errorPage(w, r, u, http.StatusNotFound, "No such message.")
			return
		}
		m, blob, err := s.openMessage(ctx, mb.ID, uint32(uid))
		if errors.Is(err, store.ErrNotFound) {
			s.errorPage(w, r, u, http.StatusNotFound, "No such message.")
			return
		} else if err != nil {
			s.serverError(w, r, "compose source", err)
			return
		}
		err = s.prefill(&f, u.acct, mb, m, blob)
		blob.Close()
		if err != nil {
			s.serverError(w, r, "compose prefill", err)
			return
		}
	}
	s.renderCompose(w, r, u, f, "", http.StatusOK)
}

func (s *Server) renderCompose(w http.ResponseWriter, r *http.Request, u *userCtx, f composeForm, errMsg string, code int) {
	p, err := s.page(r.Context(), u, "Compose", 0)
	if err != nil {
		s.serverError(w, r, "compose page", err)
		return
	}
	s.render(w, r, code, "compose", &composeData{pageData: p, Form: f, Froms: s.sendAddresses(r.Context(), u.acct),
		Error: errMsg, MaxSize: formatSize(s.cfg.MaxMessageBytes), MaxBytes: s.cfg.MaxMessageBytes})
}

// readForm reads a posted compose form.
func readForm(r *http.Request) composeForm {
	v := r.PostFormValue
	f := composeForm{
		From: strings.TrimSpace(v("from")), To: v("to"), Cc: v("cc"), Bcc: v("bcc"),
		Subject: v("subject"), Body: v("body"),
		InReplyTo: v("in_reply_to"), References: v("references"), Mode: v("mode"),
	}
	f.SourceMB, _ = strconv.ParseInt(v("source_mb"), 10, 64)
	f.DraftMB, _ = strconv.ParseInt(v("draft_mb"), 10, 64)
	if n, err := strconv.ParseUint(v("source_uid"), 10, 32); err == nil {
		f.SourceUID = uint32(n)
	}
	if n, err := strconv.ParseUint(v("draft_uid"), 10, 32); err == nil {
		f.DraftUID = uint32(n)
	}
	for _, k := range r.PostForm["keep"] {
		f.Keep = append(f.Keep, keptAttachment{attachment: attachment{Path: k}, Checked: true})
	}
	return f
}

// userError is a problem the user can fix, shown on the compose page.
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func (s *Server) composePost(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	f := readForm(r)
	send := r.PostFormValue("action") == "send"
	files, err := uploadedFiles(r)
	uploaded := len(files)
	if err == nil {
		var kept []outAttachment
		kept, err = s.keptAttachments(ctx, u.acct.ID, &f)
		files = append(kept, files...)
	}
	notice := "Draft saved."
	if err == nil && send {
		notice, err = s.send(ctx, u, &f, files)
	} else if err == nil {
		err = s.saveDraft(ctx, u, &f, files)
	}
	var ue *userError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		if uploaded > 0 {
			ue.msg += " Attach your files again."
		}
		s.renderCompose(w, r, u, f, ue.msg, http.StatusUnprocessableEntity)
		return
	default:
		s.log.Error("web compose", "user", u.acct.Address, "err", err)
		s.renderCompose(w, r, u, f, "The message could not be stored; try again later.", http.StatusInternalServerError)
		return
	}
	// The draft this form came from is replaced.
	if f.DraftMB != 0 && f.DraftUID != 0 {
		if mb, err := s.findMailbox(ctx, u.acct.ID, strconv.FormatInt(f.DraftMB, 10)); err == nil && mb.SpecialUse == store.SpecialDrafts {
			if _, err := s.st.Expunge(ctx, mb.ID, []uint32{f.DraftUID}); err != nil {
				s.log.Warn("removing old draft", "err", err)
			}
		}
	}
	u.sess.setFlash(notice, false)
	if send {
		sent, err := s.specialMailbox(ctx, u.acct.ID, store.SpecialSent, "Sent")
		if err == nil {
			http.Redirect(w, r, mailboxURL(sent.ID, "", "", 1), http.StatusSeeOther)
			return
		}
	} else {
		drafts, err := s.specialMailbox(ctx, u.acct.ID, store.SpecialDrafts, "Drafts")
		if err == nil {
			http.Redirect(w, r, mailboxURL(drafts.ID, "", "", 1), http.StatusSeeOther)
			return
		}
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// uploadedFiles reads the attachments of the form.
func uploadedFiles(r *http.Request) ([]outAttachment, error) {
	if r.MultipartForm == nil {
		return nil, nil
	}
	var out []outAttachment
	for _, fh := range r.MultipartForm.File["attachment"] {
		if fh.Filename == "" && fh.Size == 0 {
			continue
		}
		f, err := fh.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, outAttachment{Name: fh.Filename, Type: fh.Header.Get("Content-Type"), Data: b})
	}
	return out, nil
}

// keptAttachments reads the attachments of the source message (forward,
// edited draft) that the form keeps.
func (s *Server) keptAttachments(ctx context.Context, accountID int64, f *composeForm) ([]outAttachment, error) {
	if len(f.Keep) == 0 || f.SourceMB == 0 || f.SourceUID == 0 {
		f.Keep = nil
		return nil, nil
	}
	mb, err := s.findMailbox(ctx, accountID, strconv.FormatInt(f.SourceMB, 10))
	if err != nil {
		return nil, &userError{"The original message is gone; its attachments cannot be kept."}
	}
	m, blob, err := s.openMessage(ctx, mb.ID, f.SourceUID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &userError{"The original message is gone; its attachments cannot be kept."}
	} else if err != nil {
		return nil, err
	}
	defer blob.Close()
	var out []outAttachment
	all := attachments(&m.Info.Body)
	for i, k := range f.Keep {
		idx := slices.IndexFunc(all, func(a attachment) bool { return a.Path == k.Path })
		if idx < 0 {
			continue
		}
		f.Keep[i].attachment = all[idx]
		p, _ := partByPath(&m.Info.Body, k.Path)
		b, err := io.ReadAll(partReader(blob, p))
		if err != nil {
			return nil, err
		}
		out = append(out, outAttachment{Name: all[idx].Name, Type: all[idx].Type, Data: b})
	}
	return out, nil
}

// parseRecipients splits a To/Cc/Bcc field: RFC 5322 address lists, with
// ";" accepted as separator too.
func parseRecipients(field, text string) ([]*mail.Address, error) {
	text = strings.TrimSpace(strings.ReplaceAll(text, ";", ","))
	if text == "" {
		return nil, nil
	}
	list, err := mail.ParseAddressList(text)
	if err != nil {
		return nil, &userError{fmt.Sprintf("The %s field is not a valid list of addresses.", field)}
	}
	return list, nil
}

// recipientsOf parses the three recipient fields.
func recipientsOf(f *composeForm) (to, cc, bcc []*mail.Address, err error) {
	if to, err = parseRecipients("To", f.To); err != nil {
		return
	}
	if cc, err = parseRecipients("Cc", f.Cc); err != nil {
		return
	}
	bcc, err = parseRecipients("Bcc", f.Bcc)
	return
}

// send submits the message the same way SMTP submission does: the sender
// checked with CanSendAs, each recipient resolved (local, or remote when
// relaying is on), Date and Message-ID added, deliver.Deliver, then a copy
// appended to Sent with \Seen. It returns the notice to show.
func (s *Server) send(ctx context.Context, u *userCtx, f *composeForm, files []outAttachment) (string, error) {
	to, cc, bcc, err := recipientsOf(f)
	if err != nil {
		return "", err
	}
	all := slices.Concat(to, cc, bcc)
	if len(all) == 0 {
		return "", &userError{"Add at least one recipient."}
	}
	from, err := s.checkFrom(ctx, u.acct, f.From)
	if err != nil {
		return "", err
	}
	var rcpts []deliver.Recipient
	for _, a := range all {
		rc, err := s.resolve(ctx, a.Address)
		if err != nil {
			return "", err
		}
		rcpts = append(rcpts, rc)
	}
	out := &outMessage{
		From: from, To: to, Cc: cc, Bcc: bcc, Subject: f.Subject, Body: f.Body,
		InReplyTo: f.InReplyTo, References: f.References, Attachments: files,
		Date: s.now(), MessageID: newMessageID(s.cfg.Hostname), Hostname: s.cfg.Hostname,
	}
	wire := out.bytes(false)
	if int64(len(wire)) > s.cfg.MaxMessageBytes {
		return "", &userError{"The message is too large: the limit is " + formatSize(s.cfg.MaxMessageBytes) + "."}
	}
	trace := s.traceHeaders(from.Address, rcpts, u.remote)
	err = s.deliver.Deliver(ctx, &deliver.Message{From: from.Address, Recipients: rcpts,
		Body: io.MultiReader(strings.NewReader(trace), bytes.NewReader(wire))})
	switch {
	case errors.Is(err, deliver.ErrRelayUnavailable):
		return "", &userError{"This server does not send mail to other domains (relaying is off)."}
	case errors.Is(err, store.ErrTooBig):
		return "", &userError{"The message is too large: the limit is " + formatSize(s.cfg.MaxMessageBytes) + "."}
	case err != nil:
		return "", err
	}
	s.log.Info("web send", "user", u.acct.Address, "from", from.Address, "rcpts", len(rcpts), "size", len(wire))
	s.markSource(ctx, u, f)
	// The Sent copy keeps Bcc, like other clients'.
	if _, err := s.deliver.Append(ctx, u.acct.ID, s.mailboxName(ctx, u.acct.ID, store.SpecialSent, "Sent"),
		[]string{store.FlagSeen}, time.Time{}, bytes.NewReader(out.bytes(true))); err != nil {
		// The message is sent; a lost Sent copy must not make the user
		// send it again.
		s.log.Error("web send: saving to Sent", "user", u.acct.Address, "err", err)
		return "Message sent, but it could not be saved to Sent.", nil
	}
	return "Message sent.", nil
}

// markSource flags the message replied to or forwarded.
func (s *Server) markSource(ctx context.Context, u *userCtx, f *composeForm) {
	if f.SourceMB == 0 || f.SourceUID == 0 {
		return
	}
	flag := ""
	switch f.Mode {
	case "reply", "replyall":
		flag = store.FlagAnswered
	case "forward":
		flag = "$Forwarded"
	default:
		return
	}
	mb, err := s.findMailbox(ctx, u.acct.ID, strconv.FormatInt(f.SourceMB, 10))
	if err != nil {
		return
	}
	if _, _, err := s.st.StoreFlags(ctx, mb.ID, []uint32{f.SourceUID}, store.FlagsAdd, []string{flag}, 0); err != nil {
		s.log.Warn("flagging source message", "err", err)
	}
}

func (s *Server) mailboxName(ctx context.Context, accountID int64, use, def string) string {
	if mb, err := s.specialMailbox(ctx, accountID, use, def); err == nil {
		return mb.Name
	}
	return def
}

// checkFrom parses the From choice and checks the user may send as it.
func (s *Server) checkFrom(ctx context.Context, acct store.Account, from string) (*mail.Address, error) {
	if from == "" {
		from = acct.Address
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, &userError{"The From address is not valid."}
	}
	ok, err := accounts.CanSendAs(ctx, s.st, acct, a.Address)
	if err != nil && !errors.Is(err, accounts.ErrInvalidAddress) {
		return nil, err
	}
	if !ok {
		return nil, &userError{"You are not allowed to send as " + a.Address + "."}
	}
	return a, nil
}

// resolve maps one recipient as SMTP submission does: local addresses
// through Resolve, foreign domains through Remote.
func (s *Server) resolve(ctx context.Context, addr string) (deliver.Recipient, error) {
	rc, err := s.deliver.Resolve(ctx, addr)
	if errors.Is(err, deliver.ErrNotLocal) {
		rc, err = s.deliver.Remote(addr)
	}
	switch {
	case err == nil:
		return rc, nil
	case errors.Is(err, deliver.ErrUnknownUser):
		return rc, &userError{"There is no such user here: " + addr + "."}
	case errors.Is(err, deliver.ErrBadAddress):
		return rc, &userError{"Not a valid address: " + addr + "."}
	case errors.Is(err, deliver.ErrRelayUnavailable):
		return rc, &userError{"Cannot send to " + addr + ": this server does not relay mail to other domains."}
	case errors.Is(err, store.ErrQuota):
		return rc, &userError{"The mailbox of " + addr + " is full."}
	}
	return rc, err
}

// saveDraft stores the form in Drafts with \Draft and \Seen; recipients
// need not be valid yet.
func (s *Server) saveDraft(ctx context.Context, u *userCtx, f *composeForm, files []outAttachment) error {
	to, cc, bcc, err := recipientsOf(f)
	if err != nil {
		return err
	}
	from, err := mail.ParseAddress(cmpOr(f.From, u.acct.Address))
	if err != nil {
		from = &mail.Address{Address: u.acct.Address}
	}
	out := &outMessage{
		From: from, To: to, Cc: cc, Bcc: bcc, Subject: f.Subject, Body: f.Body,
		InReplyTo: f.InReplyTo, References: f.References, Attachments: files,
		Date: s.now(), MessageID: newMessageID(s.cfg.Hostname), Hostname: s.cfg.Hostname,
	}
	wire := out.bytes(true)
	if int64(len(wire)) > s.cfg.MaxMessageBytes {
		return &userError{"The draft is too large: the limit is " + formatSize(s.cfg.MaxMessageBytes) + "."}
	}
	_, err = s.deliver.Append(ctx, u.acct.ID, s.mailboxName(ctx, u.acct.ID, store.SpecialDrafts, "Drafts"),
		[]string{store.FlagDraft, store.FlagSeen}, time.Time{}, bytes.NewReader(wire))
	if errors.Is(err, store.ErrQuota) {
		return &userError{"Your mailbox is full (quota exceeded)."}
	}
	return err
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// traceHeaders are the trace fields SMTP submission would add (RFC 5321
// §4.4): Return-Path when every copy stays here (a relayed message must
// not carry one), and a Received field naming the web client's address.
func (s *Server) traceHeaders(from string, rcpts []deliver.Recipient, remote netip.Addr) string {
	var b strings.Builder
	local := true
	for _, rc := range rcpts {
		local = local && len(rc.Remote) == 0
	}
	if local {
		b.WriteString("Return-Path: <" + from + ">\r\n")
	}
	ip := "unknown"
	if remote.IsValid() {
		ip = "[" + remote.String() + "]"
		if remote.Is6() {
			ip = "[IPv6:" + remote.String() + "]"
		}
	}
	b.WriteString("Received: from webmail (" + ip + ")\r\n\tby " + s.cfg.Hostname + " (Tern webmail) id " +
		rand.Text()[:16] + ";\r\n\t" + s.now().Format(time.RFC1123Z) + "\r\n")
	return b.String()
}
