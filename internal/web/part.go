package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

// headerDecoder decodes RFC 2047 encoded-words in any charset go-message
// knows.
var headerDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeader returns a header's text as UTF-8; what does not decode is
// kept as written.
func decodeHeader(s string) string {
	if strings.Contains(s, "=?") {
		if d, err := headerDecoder.DecodeHeader(s); err == nil {
			s = d
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func param(ps []msginfo.Param, name string) string {
	for _, p := range ps {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// partName is an attachment's file name, from Content-Disposition or the
// older Content-Type name parameter.
func partName(p *msginfo.Part) string {
	n := param(p.DispositionParams, "filename")
	if n == "" {
		n = param(p.Params, "name")
	}
	return decodeHeader(n)
}

// displayPart is a text part shown as the message's body.
type displayPart struct {
	Part *msginfo.Part
	HTML bool
}

// attachment is a part offered for download.
type attachment struct {
	Path string // as partByPath reads it
	Name string
	Type string
	Size int64 // an estimate of the decoded size
}

// decodedSize estimates a part's size once decoded, without reading it:
// base64 carries 57 bytes in each 78-byte line (RFC 2045 §6.8).
func decodedSize(p *msginfo.Part) int64 {
	if strings.EqualFold(p.Encoding, "BASE64") {
		return p.Size() * 57 / 78
	}
	return p.Size()
}

// bodyParts walks the MIME tree for what to show: the richest
// alternative, the root of related parts, every inline text part of a
// mixed multipart.
func bodyParts(root *msginfo.Part) []displayPart {
	var out []displayPart
	var walk func(p *msginfo.Part)
	walk = func(p *msginfo.Part) {
		switch {
		case p.Type == "multipart" && p.Subtype == "alternative":
			if len(p.Children) == 0 {
				return
			}
			best := -1
			for i := range p.Children {
				if hasHTML(&p.Children[i]) {
					best = i
				}
			}
			if best < 0 {
				best = len(p.Children) - 1
			}
			walk(&p.Children[best])
		case p.Type == "multipart" && p.Subtype == "related":
			if len(p.Children) > 0 {
				walk(&p.Children[0])
			}
		case p.Type == "multipart":
			for i := range p.Children {
				walk(&p.Children[i])
			}
		case p.Type == "text" && (p.Subtype == "plain" || p.Subtype == "html") && !isAttachment(p):
			out = append(out, displayPart{Part: p, HTML: p.Subtype == "html"})
		}
	}
	walk(root)
	return out
}

func hasHTML(p *msginfo.Part) bool {
	if p.Type == "text" && p.Subtype == "html" {
		return true
	}
	for i := range p.Children {
		if hasHTML(&p.Children[i]) {
			return true
		}
	}
	return false
}

func isAttachment(p *msginfo.Part) bool {
	return p.Disposition == "attachment" || p.Disposition != "inline" && partName(p) != ""
}

// attachments lists every leaf part that is not shown as the body, in
// tree order.
func attachments(root *msginfo.Part) []attachment {
	shown := map[*msginfo.Part]bool{}
	for _, d := range bodyParts(root) {
		shown[d.Part] = true
	}
	var out []attachment
	var walk func(p *msginfo.Part, path string)
	walk = func(p *msginfo.Part, path string) {
		if p.Type == "multipart" {
			for i := range p.Children {
				cp := strconv.Itoa(i + 1)
				if path != "" {
					cp = path + "." + cp
				}
				walk(&p.Children[i], cp)
			}
			return
		}
		if shown[p] {
			return
		}
		// A part that is neither shown nor named is still offered: an
		// alternative not chosen is skipped, anything else is content.
		if p.Type == "text" && (p.Subtype == "plain" || p.Subtype == "html") && !isAttachment(p) {
			return
		}
		a := attachment{Path: path, Name: partName(p), Type: p.Type + "/" + p.Subtype, Size: decodedSize(p)}
		if a.Path == "" {
			a.Path = "0"
		}
		if a.Name == "" {
			a.Name = "part-" + a.Path
			if p.Type == "message" && p.Subtype == "rfc822" {
				a.Name += ".eml"
			}
		}
		out = append(out, a)
	}
	walk(root, "")
	return out
}

// partByPath finds a part by the path attachments gives it: "0" is the
// root, "2.1" the first child of the second child.
func partByPath(root *msginfo.Part, path string) (*msginfo.Part, bool) {
	if path == "0" {
		return root, true
	}
	p := root
	for _, s := range strings.Split(path, ".") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > len(p.Children) {
			return nil, false
		}
		p = &p.Children[n-1]
	}
	return p, true
}

// partReader streams the decoded body of a part (base64 and
// quoted-printable undone) from the stored message.
func partReader(blob io.ReaderAt, p *msginfo.Part) io.Reader {
	raw := io.NewSectionReader(blob, p.BodyStart, p.End-p.BodyStart)
	switch strings.ToUpper(p.Encoding) {
	case "BASE64":
		return base64.NewDecoder(base64.StdEncoding, &base64Filter{r: raw})
	case "QUOTED-PRINTABLE":
		return quotedprintable.NewReader(raw)
	}
	return raw
}

// base64Filter drops what is not base64 alphabet (line breaks, stray
// spaces), as mail readers do; padding ends nothing early.
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(b []byte) (int, error) {
	for {
		n, err := f.r.Read(b)
		j := 0
		for _, c := range b[:n] {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
				b[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// maxTextBytes bounds the decoded text shown of one part; the rest is
// cut, the whole part stays downloadable.
const maxTextBytes = 4 << 20

// partText reads a text part and converts it to UTF-8.
func partText(blob io.ReaderAt, p *msginfo.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(partReader(blob, p), maxTextBytes))
	if err != nil && len(b) == 0 {
		return "", err
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	cs := strings.ToLower(param(p.Params, "charset"))
	switch cs {
	case "", "us-ascii", "utf-8", "utf8":
		return strings.ToValidUTF8(string(b), "\uFFFD"), nil
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return latin1(b), nil
	}
	out, err := io.ReadAll(r)
	if err != nil && len(out) == 0 {
		return latin1(b), nil
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), nil
}

// latin1 reads bytes of an unknown charset as ISO-8859-1 unless they are
// UTF-8 already: no byte is lost.
func latin1(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// openMessage loads one message of a mailbox and opens its body.
func (s *Server) openMessage(ctx context.Context, mailboxID int64, uid uint32) (store.Message, store.BlobReader, error) {
	ms, err := s.st.GetMessages(ctx, mailboxID, []uint32{uid})
	if err != nil {
		return store.Message{}, nil, err
	}
	if len(ms) == 0 || ms[0].Info == nil {
		return store.Message{}, nil, store.ErrNotFound
	}
	blob, err := s.st.OpenBlob(ctx, ms[0].BlobID)
	if err != nil {
		return store.Message{}, nil, fmt.Errorf("open body: %w", err)
	}
	return ms[0], blob, nil
}

// readHeaderBlock returns the top-level header of a message.
func readHeaderBlock(blob io.ReaderAt, info *msginfo.Info) ([]byte, error) {
	b := make([]byte, info.HeaderSize)
	if _, err := blob.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}
