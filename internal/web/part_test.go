package web

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/msginfo"
)

func TestBodyPartsAndAttachments(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		body    []string // decoded display parts, "html:" prefixed for HTML
		attachs []string // name=decoded content
	}{
		{
			name: "plain",
			msg:  "Subject: x\n\nhello\n",
			body: []string{"hello\n"},
		},
		{
			name: "alternative prefers html",
			msg: "Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain\n--b\n" +
				"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\nPHA+aHRtbDwvcD4=\n--b--\n",
			body: []string{"html:<p>html</p>"},
		},
		{
			name: "mixed with attachments, QP and base64",
			msg: "Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain; charset=iso-8859-1\n" +
				"Content-Transfer-Encoding: quoted-printable\n\ncaf=E9 =\nau lait\n--m\n" +
				"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\n" +
				"Content-Transfer-Encoding: base64\n\naGVs\nbG8g\nd29y bGQ=\n--m\n" +
				"Content-Type: text/plain; name=notes.txt\nContent-Disposition: attachment\n\nnotes\n--m--\n",
			body:    []string{"café au lait"},
			attachs: []string{"résumé.txt=hello world", "notes.txt=notes"},
		},
		{
			name: "related keeps the root, images are attachments",
			msg: "Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n<img src=\"cid:a@b\">\n--r\n" +
				"Content-Type: image/png\nContent-ID: <a@b>\nContent-Transfer-Encoding: base64\n\naGk=\n--r--\n",
			body:    []string{"html:<img src=\"cid:a@b\">"},
			attachs: []string{"part-2=hi"},
		},
		{
			name:    "single non-text body",
			msg:     "Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\nJVBERg==\n",
			attachs: []string{"a.pdf=%PDF"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.msg)
			info, err := msginfo.ParseBytes(raw)
			if err != nil {
				t.Fatal(err)
			}
			blob := bytes.NewReader(raw)
			parts := bodyParts(&info.Body)
			texts, err := readTexts(blob, parts)
			if err != nil {
				t.Fatal(err)
			}
			var body []string
			for i, p := range parts {
				if p.HTML {
					texts[i] = "html:" + texts[i]
				}
				body = append(body, texts[i])
			}
			if strings.Join(body, "|") != strings.Join(tc.body, "|") {
				t.Errorf("body = %q, want %q", body, tc.body)
			}
			var atts []string
			for _, a := range attachments(&info.Body) {
				p, ok := partByPath(&info.Body, a.Path)
				if !ok {
					t.Fatalf("path %q", a.Path)
				}
				b, _ := io.ReadAll(partReader(blob, p))
				atts = append(atts, a.Name+"="+string(b))
			}
			if strings.Join(atts, "|") != strings.Join(tc.attachs, "|") {
				t.Errorf("attachments = %q, want %q", atts, tc.attachs)
			}
		})
	}
}

func TestInlineCIDs(t *testing.T) {
	raw := []byte("Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:logo@x\"><img src=\"cid:missing@x\">\r\n--r\r\n" +
		"Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--r--\r\n")
	info, err := msginfo.ParseBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{policies: newPolicies()}
	parts := bodyParts(&info.Body)
	texts, _ := readTexts(bytes.NewReader(raw), parts)
	doc := s.messageDocument(parts, texts, &info.Body, bytes.NewReader(raw), false)
	if !strings.Contains(doc, `<img src="data:image/png;base64,iVBORw0KGgo="`) {
		t.Errorf("cid image not inlined:\n%s", doc)
	}
	if strings.Contains(doc, "cid:") {
		t.Errorf("unresolved cid: kept:\n%s", doc)
	}
}

func TestHTMLToTextAndQuote(t *testing.T) {
	got := quote(htmlToText("<p>Hello&nbsp;<b>you</b></p><div>line two</div><script>x()</script>"))
	want := "> Hello\u00a0you\n> line two"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := quote("a\n> b"); got != "> a\n>> b" {
		t.Errorf("nested quote = %q", got)
	}
}
