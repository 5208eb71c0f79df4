package imapd

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"slices"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

// maxSearchText bounds how much of one part BODY/TEXT search reads.
const maxSearchText = 8 << 20

// searchMsg is one message under evaluation; its stored body is opened
// and read lazily.
type searchMsg struct {
	c      *conn
	i      int
	st     *msgState
	msg    *store.Message
	blob   store.BlobReader
	header []byte
}

func (m *searchMsg) close() {
	if m.blob != nil {
		m.blob.Close()
	}
}

func (m *searchMsg) match(k *searchKey) (bool, error) {
	st := m.st
	switch k.op {
	case "AND":
		for _, kid := range k.kids {
			if ok, err := m.match(kid); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	case "OR":
		ok, err := m.match(k.kids[0])
		if ok || err != nil {
			return ok, err
		}
		return m.match(k.kids[1])
	case "NOT":
		ok, err := m.match(k.kids[0])
		return !ok, err
	case "ALL", "OLD":
		return true, nil
	case "NEW", "RECENT":
		return false, nil // \Recent is not kept (IMAP4rev2 dropped it)
	case "SEQ":
		if k.set.saved {
			return m.inSaved(), nil
		}
		return k.set.containsUID(uint32(m.i+1), uint32(len(m.c.sel.msgs))), nil
	case "UID":
		if k.set.saved {
			return m.inSaved(), nil
		}
		return k.set.containsUID(st.uid, m.c.sel.maxUID()), nil
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN":
		return hasFlag(st.flags, `\`+k.op), nil
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		return !hasFlag(st.flags, `\`+k.op[2:]), nil
	case "KEYWORD":
		return hasFlag(st.flags, k.str), nil
	case "UNKEYWORD":
		return !hasFlag(st.flags, k.str), nil
	case "MODSEQ":
		return st.modseq >= k.n, nil
	case "LARGER":
		return uint64(m.msg.Size) > k.n, nil
	case "SMALLER":
		return uint64(m.msg.Size) < k.n, nil
	case "BEFORE", "ON", "SINCE":
		return compareDate(m.msg.InternalDate, k), nil
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		d := m.info().Date
		if d.IsZero() {
			d = m.msg.InternalDate
		}
		return compareDate(d, k), nil
	case "FROM", "TO", "CC", "BCC":
		return containsFold(addressText(m.info().Envelope, k.op), k.str), nil
	case "SUBJECT":
		return containsFold(decodeWords(m.info().Envelope.Subject), k.str), nil
	case "HEADER":
		return m.matchHeader(k.hdr, k.str)
	case "BODY":
		return m.matchBody(k.str)
	case "TEXT":
		hdr, err := m.readHeader()
		if err != nil || containsFold(decodeWords(string(hdr)), k.str) {
			return err == nil, err
		}
		return m.matchBody(k.str)
	}
	return false, nil
}

func (m *searchMsg) inSaved() bool {
	_, ok := slices.BinarySearch(m.c.saved, m.st.uid) // saved is ascending
	return ok
}

func (m *searchMsg) info() *msginfo.Info {
	if m.msg.Info == nil {
		return &msginfo.Info{Size: m.msg.Size}
	}
	return m.msg.Info
}

// compareDate compares calendar dates, ignoring time and zone
// (RFC 9051 §6.4.4).
func compareDate(t time.Time, k *searchKey) bool {
	y, mo, d := t.Date()
	day := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	switch k.op {
	case "BEFORE", "SENTBEFORE":
		return day.Before(k.date)
	case "ON", "SENTON":
		return day.Equal(k.date)
	}
	return !day.Before(k.date)
}

func addressText(e msginfo.Envelope, field string) string {
	var l []msginfo.Address
	switch field {
	case "FROM":
		l = e.From
	case "TO":
		l = e.To
	case "CC":
		l = e.Cc
	case "BCC":
		l = e.Bcc
	}
	var b strings.Builder
	for _, a := range l {
		b.WriteString(a.Name + " <" + a.Mailbox + "@" + a.Host + ">, ")
	}
	return b.String()
}

var wordDecoder = &mime.WordDecoder{}

func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// containsFold is a case-insensitive substring test (RFC 9051 §6.4.4).
func containsFold(s, sub string) bool {
	if isASCII(sub) && isASCII(s) {
		return bytes.Contains(bytes.ToLower([]byte(s)), bytes.ToLower([]byte(sub)))
	}
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func (m *searchMsg) open() (store.BlobReader, error) {
	if m.blob == nil {
		b, err := m.c.srv.st.OpenBlob(m.c.ctx, m.msg.BlobID)
		if err != nil {
			return nil, err
		}
		m.blob = b
	}
	return m.blob, nil
}

func (m *searchMsg) readRange(start, end int64) ([]byte, error) {
	b, err := m.open()
	if err != nil {
		return nil, err
	}
	end = min(end, start+maxSearchText)
	if end <= start {
		return nil, nil
	}
	buf := make([]byte, end-start)
	n, err := b.ReadAt(buf, start)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return buf[:n], nil
}

func (m *searchMsg) readHeader() ([]byte, error) {
	if m.header == nil {
		body := &m.info().Body
		h, err := m.readRange(body.HeaderStart, body.BodyStart)
		if err != nil {
			return nil, err
		}
		m.header = h
	}
	return m.header, nil
}

// matchHeader: HEADER name "" matches any message with the field.
func (m *searchMsg) matchHeader(name, value string) (bool, error) {
	hdr, err := m.readHeader()
	if err != nil {
		return false, err
	}
	fields := msginfo.HeaderFields(hdr, []string{name}, false)
	for _, line := range strings.Split(unfold(string(fields)), "\n") {
		_, v, ok := strings.Cut(line, ":")
		if ok && containsFold(decodeWords(strings.TrimSpace(v)), value) {
			return true, nil
		}
	}
	return false, nil
}

func unfold(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n ", " ")
	return strings.ReplaceAll(s, "\n\t", " ")
}

// matchBody searches the text parts, decoded from their transfer
// encoding.
func (m *searchMsg) matchBody(needle string) (bool, error) {
	var found bool
	var walk func(p *msginfo.Part, top bool) error
	walk = func(p *msginfo.Part, top bool) error {
		if found {
			return nil
		}
		switch {
		case p.Type == "multipart":
			for i := range p.Children {
				if err := walk(&p.Children[i], false); err != nil {
					return err
				}
			}
			return nil
		case p.Type == "message" && p.Message != nil:
			return walk(p.Message, false)
		case p.Type != "text" && p.Type != "" && !top:
			return nil
		}
		raw, err := m.readRange(p.BodyStart, p.End)
		if err != nil {
			return err
		}
		found = containsFold(string(decodeTransfer(raw, p.Encoding)), needle)
		return nil
	}
	err := walk(&m.info().Body, true)
	return found, err
}

func decodeTransfer(raw []byte, enc string) []byte {
	var r io.Reader
	switch strings.ToUpper(enc) {
	case "BASE64":
		r = base64.NewDecoder(base64.StdEncoding, bytes.NewReader(raw))
	case "QUOTED-PRINTABLE":
		r = quotedprintable.NewReader(bytes.NewReader(raw))
	default:
		return raw
	}
	d, err := io.ReadAll(r)
	if err != nil && len(d) == 0 {
		return raw
	}
	return d
}
