package web

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"github.com/microcosm-cc/bluemonday"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

// outAttachment is one file of a composed message.
type outAttachment struct {
	Name string
	Type string
	Data []byte
}

// outMessage is a composed message, written as RFC 5322 + MIME.
type outMessage struct {
	From                  *mail.Address
	To, Cc, Bcc           []*mail.Address
	Subject, Body         string
	InReplyTo, References string
	Attachments           []outAttachment
	Date                  time.Time
	MessageID             string
	Hostname              string
}

func newMessageID(host string) string {
	return "<" + rand.Text() + "@" + host + ">"
}

// headerSafe drops CR, LF and other controls from text a user typed into
// a one-line field: no header injection.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// formatAddress writes an address for a header: bare without a name,
// else with the name quoted and RFC 2047-encoded as needed.
func formatAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return a.String()
}

func addrList(list []*mail.Address) string {
	parts := make([]string, len(list))
	for i, a := range list {
		parts[i] = formatAddress(a)
	}
	return strings.Join(parts, ",\r\n ")
}

// bytes writes the message with CRLF line endings; Bcc is written only
// into the copies kept for the sender (Sent, Drafts), never into the one
// delivered.
func (m *outMessage) bytes(withBcc bool) []byte {
	var b bytes.Buffer
	hdr := func(name, value string) {
		if value != "" {
			b.WriteString(name + ": " + value + "\r\n")
		}
	}
	hdr("Date", m.Date.Format(time.RFC1123Z))
	hdr("From", formatAddress(m.From))
	hdr("To", addrList(m.To))
	hdr("Cc", addrList(m.Cc))
	if withBcc {
		hdr("Bcc", addrList(m.Bcc))
	}
	hdr("Subject", mime.QEncoding.Encode("utf-8", headerSafe(m.Subject)))
	hdr("Message-ID", m.MessageID)
	hdr("In-Reply-To", headerSafe(m.InReplyTo))
	hdr("References", headerSafe(m.References))
	hdr("MIME-Version", "1.0")
	hdr("User-Agent", "Tern webmail")
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n")
	if len(m.Attachments) == 0 {
		writeTextPart(&b, body)
		return b.Bytes()
	}
	boundary := "=_tern_" + rand.Text()
	hdr("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	b.WriteString("\r\nThis is a message in MIME format.\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	writeTextPart(&b, body)
	for _, a := range m.Attachments {
		b.WriteString("\r\n--" + boundary + "\r\n")
		typ := a.Type
		if _, _, err := mime.ParseMediaType(typ); err != nil || typ == "" || strings.HasPrefix(typ, "multipart/") {
			typ = "application/octet-stream"
		}
		name := headerSafe(a.Name)
		if name == "" {
			name = "attachment"
		}
		mt, params, _ := mime.ParseMediaType(typ)
		params["name"] = name
		b.WriteString("Content-Type: " + mime.FormatMediaType(mt, params) + "\r\n")
		b.WriteString("Content-Disposition: " + mime.FormatMediaType("attachment", map[string]string{"filename": name}) + "\r\n")
		b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
		writeBase64(&b, a.Data)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// writeTextPart writes a text/plain header block and its body, quoted-
// printable so that no line is too long and 8-bit text passes everywhere.
func writeTextPart(b *bytes.Buffer, body string) {
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	w := quotedprintable.NewWriter(b)
	io.WriteString(w, body)
	w.Close()
	b.WriteString("\r\n")
}

// writeBase64 writes data base64-encoded in lines of 76 characters (RFC
// 2045 §6.8).
func writeBase64(b *bytes.Buffer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	if enc != "" {
		b.WriteString(enc + "\r\n")
	}
}

// textOf is a message's body as plain text, for quoting: the plain parts,
// or HTML with its tags stripped.
func textOf(blob io.ReaderAt, root *msginfo.Part) string {
	parts := bodyParts(root)
	texts, err := readTexts(blob, parts)
	if err != nil {
		return ""
	}
	var sb strings.Builder
	for i, p := range parts {
		t := texts[i]
		if p.HTML {
			t = htmlToText(t)
		}
		sb.WriteString(t)
	}
	return sb.String()
}

var stripPolicy = bluemonday.StrictPolicy()

func htmlToText(s string) string {
	for _, tag := range []string{"<br", "<p", "<div", "<tr", "<li", "<BR", "<P", "<DIV", "<TR", "<LI"} {
		s = strings.ReplaceAll(s, tag, "\n"+tag)
	}
	t := stripPolicy.Sanitize(s)
	t = html.UnescapeString(t)
	var out []string
	blank := 0
	for _, l := range strings.Split(t, "\n") {
		l = strings.TrimRight(l, " \t\r")
		if strings.TrimSpace(l) == "" {
			blank++
			if blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}

func quote(text string) string {
	text = strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ">") {
			lines[i] = ">" + l
		} else {
			lines[i] = "> " + l
		}
	}
	return strings.Join(lines, "\n")
}

func toList(as []msginfo.Address) []string {
	var out []string
	for _, a := range as {
		if a.Host == "" {
			continue
		}
		out = append(out, displayAddr(a))
	}
	return out
}

// displayAddr writes an address for an editable field: bare when it has
// no name, RFC 5322 quoted otherwise.
func displayAddr(a msginfo.Address) string {
	if a.Name == "" {
		return addrEmail(a)
	}
	return (&mail.Address{Name: a.Name, Address: addrEmail(a)}).String()
}

// prefill fills a compose form from a message: reply, reply to all,
// forward, or a draft to edit.
func (s *Server) prefill(f *composeForm, acct store.Account, mb store.Mailbox, m store.Message, blob store.BlobReader) error {
	env := m.Info.Envelope
	subject := decodeHeader(env.Subject)
	text := textOf(blob, &m.Info.Body)
	f.SourceMB, f.SourceUID = mb.ID, m.UID
	switch f.Mode {
	case "reply", "replyall":
		to := env.ReplyTo
		if len(to) == 0 {
			to = env.From
		}
		f.To = strings.Join(toList(to), ", ")
		if f.Mode == "replyall" {
			seen := map[string]bool{strings.ToLower(acct.Address): true}
			for _, a := range to {
				seen[strings.ToLower(addrEmail(a))] = true
			}
			var cc []string
			for _, a := range append(append([]msginfo.Address{}, env.To...), env.Cc...) {
				e := strings.ToLower(addrEmail(a))
				if a.Host == "" || seen[e] {
					continue
				}
				seen[e] = true
				cc = append(cc, displayAddr(a))
			}
			f.Cc = strings.Join(cc, ", ")
		}
		if !strings.HasPrefix(strings.ToLower(subject), "re:") {
			subject = "Re: " + subject
		}
		f.Subject = subject
		f.InReplyTo = env.MessageID
		f.References = strings.TrimSpace(references(blob, m.Info) + " " + env.MessageID)
		who := formatAddrs(env.From)
		f.Body = "\n\nOn " + m.InternalDate.Format("Mon, 2 Jan 2006 at 15:04") + ", " + who + " wrote:\n" + quote(text) + "\n"
	case "forward":
		if !strings.HasPrefix(strings.ToLower(subject), "fwd:") {
			subject = "Fwd: " + subject
		}
		f.Subject = subject
		f.Body = "\n\n---------- Forwarded message ----------\nFrom: " + formatAddrs(env.From) +
			"\nDate: " + env.Date + "\nSubject: " + decodeHeader(env.Subject) + "\nTo: " + formatAddrs(env.To) + "\n\n" + text + "\n"
		for _, a := range attachments(&m.Info.Body) {
			f.Keep = append(f.Keep, keptAttachment{attachment: a, Checked: true})
		}
	case "draft":
		f.To = strings.Join(toList(env.To), ", ")
		f.Cc = strings.Join(toList(env.Cc), ", ")
		f.Bcc = strings.Join(toList(env.Bcc), ", ")
		if len(env.From) > 0 {
			f.From = addrEmail(env.From[0])
		}
		f.Subject = subject
		f.Body = text
		f.InReplyTo = env.InReplyTo
		f.References = references(blob, m.Info)
		for _, a := range attachments(&m.Info.Body) {
			f.Keep = append(f.Keep, keptAttachment{attachment: a, Checked: true})
		}
		if mb.SpecialUse == store.SpecialDrafts {
			f.DraftMB, f.DraftUID = mb.ID, m.UID
		}
	default:
		f.Mode = ""
		f.SourceMB, f.SourceUID = 0, 0
	}
	return nil
}

// references reads the References header of a stored message.
func references(blob io.ReaderAt, info *msginfo.Info) string {
	h, err := readHeaderBlock(blob, info)
	if err != nil {
		return ""
	}
	msg, err := mail.ReadMessage(bytes.NewReader(append(h, '\r', '\n')))
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(msg.Header.Get("References")), " ")
}
