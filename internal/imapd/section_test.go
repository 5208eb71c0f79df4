package imapd

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/msginfo"
)

const nestedMsg = "Subject: outer\r\n" +
	"Content-Type: multipart/mixed; boundary=o\r\n" +
	"\r\n" +
	"--o\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"part one\r\n" +
	"--o\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"Subject: inner\r\n" +
	"Content-Type: multipart/alternative; boundary=i\r\n" +
	"\r\n" +
	"--i\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"inner plain\r\n" +
	"--i\r\n" +
	"Content-Type: text/html\r\n" +
	"\r\n" +
	"<p>inner html</p>\r\n" +
	"--i--\r\n" +
	"\r\n" +
	"--o--\r\n"

func TestSectionRanges(t *testing.T) {
	info, err := msginfo.ParseBytes([]byte(nestedMsg))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path []int, spec string) string {
		start, end, ok := sectionRange(info, section{path: path, spec: spec})
		if !ok {
			return "<none>"
		}
		return nestedMsg[start:end]
	}
	for _, tc := range []struct {
		path []int
		spec string
		want string // prefix, or "<none>"
	}{
		{nil, "HEADER", "Subject: outer\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n"},
		{nil, "TEXT", "--o\r\n"},
		{[]int{1}, "", "part one"},
		{[]int{1}, "MIME", "Content-Type: text/plain\r\n\r\n"},
		{[]int{2}, "", "Subject: inner\r\n"},
		{[]int{2}, "HEADER", "Subject: inner\r\nContent-Type: multipart/alternative"},
		{[]int{2}, "TEXT", "--i\r\n"},
		{[]int{2, 1}, "", "inner plain"},
		{[]int{2, 2}, "", "<p>inner html</p>"},
		{[]int{2, 2}, "MIME", "Content-Type: text/html\r\n\r\n"},
		{[]int{1}, "HEADER", "<none>"},
		{[]int{3}, "", "<none>"},
		{[]int{2, 3}, "", "<none>"},
	} {
		got := get(tc.path, tc.spec)
		if !strings.HasPrefix(got, tc.want) || (tc.want == "<none>") != (got == "<none>") {
			t.Errorf("BODY[%v.%s] = %q, want prefix %q", tc.path, tc.spec, got, tc.want)
		}
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	writeBodyStructure(w, &info.Body, true, false)
	w.Flush()
	bs := buf.String()
	for _, want := range []string{`"message" "rfc822" NIL NIL NIL "7BIT"`, `(NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)`, `"alternative" ("boundary" "i")`, `"mixed" ("boundary" "o") NIL NIL NIL)`} {
		if !strings.Contains(bs, want) {
			t.Errorf("BODYSTRUCTURE lacks %q:\n%s", want, bs)
		}
	}
}
