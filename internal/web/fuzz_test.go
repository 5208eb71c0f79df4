package web

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/ternmail/tern/internal/msginfo"
)

// FuzzMessageRender runs any message through what the reading page does
// with it: choosing the body, listing and decoding attachments, and
// building the sanitised iframe document. Nothing may panic, and no
// document may carry a script, an event handler or a remote image.
func FuzzMessageRender(f *testing.F) {
	f.Add([]byte(hostileHTML))
	f.Add([]byte("Subject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>h=\r\ntml</p><scr=\r\nipt>x</script>\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:logo@x\">\r\n--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--r--\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n--m\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n--m--\r\n"))
	s := &Server{policies: newPolicies()}
	f.Fuzz(func(t *testing.T, raw []byte) {
		info, err := msginfo.ParseBytes(raw)
		if err != nil {
			return
		}
		blob := bytes.NewReader(raw)
		parts := bodyParts(&info.Body)
		texts, err := readTexts(blob, parts)
		if err != nil {
			return
		}
		for _, a := range attachments(&info.Body) {
			p, ok := partByPath(&info.Body, a.Path)
			if !ok {
				t.Fatalf("attachment path %q does not resolve", a.Path)
			}
			io.Copy(io.Discard, partReader(blob, p))
		}
		doc := s.messageDocument(parts, texts, &info.Body, blob, false)
		if bad := activeContent(doc); bad != "" {
			t.Fatalf("document has %s:\n%s", bad, doc)
		}
	})
}

var urlAttrs = map[string]bool{"href": true, "src": true, "srcset": true, "action": true, "formaction": true,
	"background": true, "poster": true, "cite": true, "longdesc": true, "usemap": true, "data": true}

// activeContent tokenises an HTML document as a browser would and names
// the first thing in it that could run or load: a script, object or
// iframe element, an event handler, a javascript: URL or a non-data src.
func activeContent(doc string) string {
	z := html.NewTokenizer(strings.NewReader(doc))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return ""
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			switch tok.Data {
			case "script", "iframe", "object", "embed", "frame", "link", "meta", "base", "form":
				if tok.Data != "meta" || len(tok.Attr) != 1 || tok.Attr[0].Key != "charset" {
					return "a <" + tok.Data + "> element"
				}
			}
			for _, a := range tok.Attr {
				v := strings.ToLower(strings.TrimSpace(a.Val))
				switch {
				case strings.HasPrefix(a.Key, "on"):
					return "an event handler " + a.Key
				case urlAttrs[a.Key] && (strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "vbscript:")):
					return "a script URL in " + a.Key
				case (a.Key == "src" || a.Key == "srcset" || a.Key == "background" || a.Key == "poster") && !strings.HasPrefix(v, "data:image/"):
					return "a remote " + a.Key
				}
			}
		}
	}
}
