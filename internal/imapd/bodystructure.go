package imapd

import (
	"bufio"
	"mime"
	"strconv"

	"github.com/ternmail/tern/internal/msginfo"
)

// writeEnvelope writes an ENVELOPE (RFC 9051 §7.5.2) from what was parsed
// at delivery. Sender and Reply-To default to From.
func writeEnvelope(w *bufio.Writer, e *msginfo.Envelope, utf8OK bool) {
	sender, replyTo := e.Sender, e.ReplyTo
	if len(sender) == 0 {
		sender = e.From
	}
	if len(replyTo) == 0 {
		replyTo = e.From
	}
	w.WriteByte('(')
	w.WriteString(nstring(e.Date, utf8OK))
	w.WriteByte(' ')
	w.WriteString(nstring(headerText(e.Subject, utf8OK), utf8OK))
	for _, l := range [][]msginfo.Address{e.From, sender, replyTo, e.To, e.Cc, e.Bcc} {
		w.WriteByte(' ')
		writeAddresses(w, l, utf8OK)
	}
	w.WriteByte(' ')
	w.WriteString(nstring(e.InReplyTo, utf8OK))
	w.WriteByte(' ')
	w.WriteString(nstring(e.MessageID, utf8OK))
	w.WriteByte(')')
}

// headerText keeps text as is for UTF-8 clients and turns raw 8-bit
// header text into an RFC 2047 encoded word for the others.
func headerText(s string, utf8OK bool) string {
	if utf8OK || isASCII(s) {
		return s
	}
	return mime.QEncoding.Encode("utf-8", s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func writeAddresses(w *bufio.Writer, l []msginfo.Address, utf8OK bool) {
	if len(l) == 0 {
		w.WriteString("NIL")
		return
	}
	w.WriteByte('(')
	for _, a := range l {
		w.WriteByte('(')
		w.WriteString(nstring(headerText(a.Name, utf8OK), utf8OK))
		w.WriteString(" NIL ")
		w.WriteString(nstring(a.Mailbox, utf8OK))
		w.WriteByte(' ')
		if a.Host == "" && a.Mailbox != "" {
			w.WriteString("NIL") // group start
		} else {
			w.WriteString(nstring(a.Host, utf8OK))
		}
		w.WriteByte(')')
	}
	w.WriteByte(')')
}

func writeParams(w *bufio.Writer, params []msginfo.Param, utf8OK bool) {
	if len(params) == 0 {
		w.WriteString("NIL")
		return
	}
	w.WriteByte('(')
	for i, p := range params {
		if i > 0 {
			w.WriteByte(' ')
		}
		w.WriteString(quote(p.Name, utf8OK))
		w.WriteByte(' ')
		w.WriteString(quote(headerText(p.Value, utf8OK), utf8OK))
	}
	w.WriteByte(')')
}

// writeBodyStructure writes BODYSTRUCTURE (ext) or BODY (RFC 9051 §7.5.2).
func writeBodyStructure(w *bufio.Writer, p *msginfo.Part, ext, utf8OK bool) {
	w.WriteByte('(')
	defer w.WriteByte(')')
	if p.Type == "multipart" {
		if len(p.Children) == 0 {
			// The syntax needs one part at least.
			w.WriteString(`("text" "plain" NIL NIL NIL "7BIT" 0 0) `)
		}
		for i := range p.Children {
			writeBodyStructure(w, &p.Children[i], ext, utf8OK)
		}
		w.WriteByte(' ')
		w.WriteString(quote(p.Subtype, utf8OK))
		if ext {
			w.WriteByte(' ')
			writeParams(w, p.Params, utf8OK)
			writeExtTail(w, p, utf8OK)
		}
		return
	}
	typ, sub := p.Type, p.Subtype
	if typ == "" {
		typ, sub = "text", "plain"
	}
	enc := p.Encoding
	if enc == "" {
		enc = "7BIT"
	}
	w.WriteString(quote(typ, utf8OK) + " " + quote(sub, utf8OK) + " ")
	writeParams(w, p.Params, utf8OK)
	w.WriteString(" " + nstring(p.ID, utf8OK) + " " + nstring(headerText(p.Description, utf8OK), utf8OK) + " " + quote(enc, utf8OK) + " " + strconv.FormatInt(p.Size(), 10))
	switch {
	case typ == "message" && (sub == "rfc822" || sub == "global") && p.Message != nil:
		w.WriteByte(' ')
		env := p.Envelope
		if env == nil {
			env = &msginfo.Envelope{}
		}
		writeEnvelope(w, env, utf8OK)
		w.WriteByte(' ')
		writeBodyStructure(w, p.Message, ext, utf8OK)
		w.WriteString(" " + strconv.FormatInt(p.Lines, 10))
	case typ == "text":
		w.WriteString(" " + strconv.FormatInt(p.Lines, 10))
	}
	if ext {
		w.WriteString(" " + nstring(p.MD5, utf8OK))
		writeExtTail(w, p, utf8OK)
	}
}

// writeExtTail writes disposition, language and location.
func writeExtTail(w *bufio.Writer, p *msginfo.Part, utf8OK bool) {
	w.WriteByte(' ')
	if p.Disposition == "" {
		w.WriteString("NIL")
	} else {
		w.WriteString("(" + quote(p.Disposition, utf8OK) + " ")
		writeParams(w, p.DispositionParams, utf8OK)
		w.WriteByte(')')
	}
	w.WriteByte(' ')
	switch len(p.Language) {
	case 0:
		w.WriteString("NIL")
	default:
		w.WriteByte('(')
		for i, l := range p.Language {
			if i > 0 {
				w.WriteByte(' ')
			}
			w.WriteString(quote(l, utf8OK))
		}
		w.WriteByte(')')
	}
	w.WriteString(" " + nstring(p.Location, utf8OK))
}
