package imapd

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

// fetchWriter writes the items of one message's FETCH response, opening
// the stored body only when a section is asked for.
type fetchWriter struct {
	c    *conn
	msg  *store.Message
	blob store.BlobReader
	n    int
	// soft is a failure that still lets the response line be completed
	// (the item is NIL); it becomes the tagged NO.
	soft error
}

func (f *fetchWriter) sep() {
	if f.n > 0 {
		f.c.out().WriteByte(' ')
	}
	f.n++
}

func (f *fetchWriter) close() {
	if f.blob != nil {
		f.blob.Close()
	}
}

func (f *fetchWriter) open() (store.BlobReader, error) {
	if f.blob == nil {
		b, err := f.c.srv.st.OpenBlob(f.c.ctx, f.msg.BlobID)
		if err != nil {
			return nil, err
		}
		f.blob = b
	}
	return f.blob, nil
}

func (f *fetchWriter) info() *msginfo.Info {
	if f.msg.Info == nil {
		return &msginfo.Info{Size: f.msg.Size, Body: msginfo.Part{Type: "text", Subtype: "plain", End: f.msg.Size}}
	}
	return f.msg.Info
}

func (f *fetchWriter) item(it fetchItem) error {
	c, w := f.c, f.c.out()
	switch it.name {
	case "INTERNALDATE":
		w.WriteString(`INTERNALDATE "` + f.msg.InternalDate.Format("02-Jan-2006 15:04:05 -0700") + `"`)
	case "RFC822.SIZE":
		w.WriteString("RFC822.SIZE " + strconv.FormatInt(f.msg.Size, 10))
	case "ENVELOPE":
		w.WriteString("ENVELOPE ")
		writeEnvelope(w, &f.info().Envelope, c.utf8)
	case "BODYSTRUCTURE":
		w.WriteString("BODYSTRUCTURE ")
		writeBodyStructure(w, &f.info().Body, true, c.utf8)
	case "BODY":
		w.WriteString("BODY ")
		writeBodyStructure(w, &f.info().Body, false, c.utf8)
	case "RFC822":
		return f.section("RFC822", fetchItem{name: "BODY["})
	case "RFC822.HEADER":
		return f.section("RFC822.HEADER", fetchItem{name: "BODY[", sec: section{spec: "HEADER"}})
	case "RFC822.TEXT":
		return f.section("RFC822.TEXT", fetchItem{name: "BODY[", sec: section{spec: "TEXT"}})
	case "BODY[":
		return f.section("BODY["+it.sec.String()+"]", it)
	case "BINARY[", "BINARY.SIZE[":
		return f.binary(it)
	}
	return nil
}

// section writes a BODY[section] (or RFC822*) item from the stored body.
func (f *fetchWriter) section(label string, it fetchItem) error {
	start, end, ok := sectionRange(f.info(), it.sec)
	var data []byte
	var r io.Reader
	if ok && end > start {
		b, err := f.open()
		if err != nil {
			return err
		}
		if strings.HasPrefix(it.sec.spec, "HEADER.FIELDS") {
			hdr := make([]byte, end-start)
			if _, err := b.ReadAt(hdr, start); err != nil && err != io.EOF {
				return err
			}
			data = msginfo.HeaderFields(hdr, it.sec.fields, it.sec.spec == "HEADER.FIELDS.NOT")
			start, end = 0, int64(len(data))
			r = bytes.NewReader(data)
		} else {
			r = io.NewSectionReader(b, start, end-start)
			start, end = 0, end-start
		}
	} else {
		start, end, r = 0, 0, bytes.NewReader(nil)
	}
	return f.literal(label, it, r, end, false)
}

// literal writes label, the partial origin and the (partial) data.
func (f *fetchWriter) literal(label string, it fetchItem, r io.Reader, size int64, binary bool) error {
	w := f.c.out()
	off, n := int64(0), size
	if it.partial {
		off = min(it.offset, size)
		n = min(it.count, size-off)
		label += "<" + strconv.FormatInt(it.offset, 10) + ">"
	}
	if binary {
		fmt.Fprintf(w, "%s ~{%d}\r\n", label, n)
	} else {
		fmt.Fprintf(w, "%s {%d}\r\n", label, n)
	}
	if off > 0 {
		if _, err := io.CopyN(io.Discard, r, off); err != nil {
			return err
		}
	}
	if _, err := io.CopyN(w, r, n); err != nil {
		return fmt.Errorf("fetch body: %w", err)
	}
	return nil
}

// binary writes BINARY[part] decoded from its transfer encoding, or its
// BINARY.SIZE (RFC 3516).
func (f *fetchWriter) binary(it fetchItem) error {
	info := f.info()
	part, ok := findPart(&info.Body, it.sec.path)
	if !ok || (len(it.sec.path) > 0 && part.Type == "multipart") {
		return f.nilItem(it, nof("UNKNOWN-CTE", "No such leaf part"))
	}
	start, end := part.BodyStart, part.End
	if len(it.sec.path) == 0 {
		start, end = 0, info.Size
	}
	b, err := f.open()
	if err != nil {
		return err
	}
	var r io.Reader = io.NewSectionReader(b, start, end-start)
	if len(it.sec.path) > 0 {
		switch strings.ToUpper(part.Encoding) {
		case "BASE64":
			r = base64.NewDecoder(base64.StdEncoding, r)
		case "QUOTED-PRINTABLE":
			r = quotedprintable.NewReader(r)
		case "", "7BIT", "8BIT", "BINARY":
		default:
			return f.nilItem(it, nof("UNKNOWN-CTE", "Unknown Content-Transfer-Encoding"))
		}
	}
	// Decoded sizes are not known in advance: decode into memory, which
	// the message size (APPENDLIMIT) bounds.
	data, err := io.ReadAll(r)
	if err != nil {
		return f.nilItem(it, nof("UNKNOWN-CTE", "Cannot decode the part"))
	}
	label := "[" + it.sec.String() + "]"
	if it.name == "BINARY.SIZE[" {
		f.c.out().WriteString("BINARY.SIZE" + label + " " + strconv.Itoa(len(data)))
		return nil
	}
	return f.literal("BINARY"+label, it, bytes.NewReader(data), int64(len(data)), bytes.IndexByte(data, 0) >= 0)
}

// nilItem writes the item as NIL and remembers why (RFC 3516 §4.2: the
// command then fails with UNKNOWN-CTE).
func (f *fetchWriter) nilItem(it fetchItem, err error) error {
	name := "BINARY"
	if it.name == "BINARY.SIZE[" {
		name = "BINARY.SIZE"
	}
	f.c.out().WriteString(name + "[" + it.sec.String() + "] NIL")
	f.soft = err
	return nil
}

// findPart walks a section path (RFC 9051 §6.4.5): part 1 of a
// non-multipart message is its body; below a message/rfc822 part the path
// continues in the enclosed message.
func findPart(root *msginfo.Part, path []int) (*msginfo.Part, bool) {
	p := root
	for k, n := range path {
		if k > 0 && p.Type == "message" && p.Subtype == "rfc822" && p.Message != nil {
			p = p.Message
		}
		if p.Type == "multipart" {
			if n > len(p.Children) {
				return nil, false
			}
			p = &p.Children[n-1]
		} else if n != 1 {
			return nil, false
		}
	}
	return p, true
}

// sectionRange is the byte range of a section in the stored body.
func sectionRange(info *msginfo.Info, s section) (start, end int64, ok bool) {
	root := &info.Body
	if len(s.path) == 0 {
		switch s.spec {
		case "":
			return 0, info.Size, true
		case "TEXT":
			return root.BodyStart, root.End, true
		default: // HEADER, HEADER.FIELDS(.NOT)
			return root.HeaderStart, root.BodyStart, true
		}
	}
	p, ok := findPart(root, s.path)
	if !ok {
		return 0, 0, false
	}
	switch s.spec {
	case "":
		return p.BodyStart, p.End, true
	case "MIME":
		return p.HeaderStart, p.BodyStart, true
	}
	// HEADER and TEXT of a part apply to an enclosed message only.
	if p.Type != "message" || p.Subtype != "rfc822" || p.Message == nil {
		return 0, 0, false
	}
	m := p.Message
	if s.spec == "TEXT" {
		return m.BodyStart, m.End, true
	}
	return m.HeaderStart, m.BodyStart, true
}
