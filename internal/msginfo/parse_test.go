package msginfo

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// crlf turns the LF line endings of a test message into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// wantPart is one part of an expected tree. Paths are "" for the top,
// ".N" appended for child N and ".m" for the message a message/rfc822
// part encloses.
type wantPart struct {
	path   string
	typ    string // "type/subtype"
	header string // bytes [HeaderStart, BodyStart)
	body   string // bytes [BodyStart, End)
	lines  int64  // -1: not checked
}

// flatten lists the parts of pt in tree order with their paths.
func flatten(path string, pt *Part, out *[]struct {
	path string
	pt   *Part
}) {
	*out = append(*out, struct {
		path string
		pt   *Part
	}{path, pt})
	for i := range pt.Children {
		flatten(fmt.Sprintf("%s.%d", path, i+1), &pt.Children[i], out)
	}
	if pt.Message != nil {
		flatten(path+".m", pt.Message, out)
	}
}

func checkParts(t *testing.T, msg string, info *Info, want []wantPart) {
	t.Helper()
	var got []struct {
		path string
		pt   *Part
	}
	flatten("", &info.Body, &got)
	if len(got) != len(want) {
		var paths []string
		for _, g := range got {
			paths = append(paths, g.path+"="+g.pt.Type+"/"+g.pt.Subtype)
		}
		t.Fatalf("got %d parts %v, want %d", len(got), paths, len(want))
	}
	for i, w := range want {
		g := got[i].pt
		if got[i].path != w.path {
			t.Errorf("part %d: path %q, want %q", i, got[i].path, w.path)
		}
		if typ := g.Type + "/" + g.Subtype; typ != w.typ {
			t.Errorf("part %q: type %s, want %s", w.path, typ, w.typ)
		}
		if h := msg[g.HeaderStart:g.BodyStart]; h != w.header {
			t.Errorf("part %q: header %q, want %q", w.path, h, w.header)
		}
		if b := msg[g.BodyStart:g.End]; b != w.body {
			t.Errorf("part %q: body %q, want %q", w.path, b, w.body)
		}
		if w.lines >= 0 && g.Lines != w.lines {
			t.Errorf("part %q: lines %d, want %d", w.path, g.Lines, w.lines)
		}
	}
}

var simpleMsg = crlf(`Date: Mon, 2 Jan 2006 15:04:05 -0700
From: "Alice Example" <alice@example.com>
To: bob@example.org, Carol <carol@example.net>
Subject: Hello
 there
Message-ID: <1234@example.com>
In-Reply-To: <1000@example.org>

Hi Bob,

how are you?
`)

func TestParseSimple(t *testing.T) {
	info, err := ParseBytes([]byte(simpleMsg))
	if err != nil {
		t.Fatal(err)
	}
	hdr := simpleMsg[:strings.Index(simpleMsg, "\r\n\r\n")+4]
	body := simpleMsg[len(hdr):]
	checkParts(t, simpleMsg, info, []wantPart{{"", "text/plain", hdr, body, 3}})
	alice := []Address{{Name: "Alice Example", Mailbox: "alice", Host: "example.com"}}
	want := Envelope{
		Date:      "Mon, 2 Jan 2006 15:04:05 -0700",
		Subject:   "Hello there",
		From:      alice,
		Sender:    alice,
		ReplyTo:   alice,
		To:        []Address{{Mailbox: "bob", Host: "example.org"}, {Name: "Carol", Mailbox: "carol", Host: "example.net"}},
		InReplyTo: "<1000@example.org>",
		MessageID: "<1234@example.com>",
	}
	if d := cmp.Diff(want, info.Envelope); d != "" {
		t.Errorf("envelope (-want +got):\n%s", d)
	}
	if info.Size != int64(len(simpleMsg)) || info.HeaderSize != int64(len(hdr)) {
		t.Errorf("size %d header %d, want %d %d", info.Size, info.HeaderSize, len(simpleMsg), len(hdr))
	}
	if wd := time.Date(2006, 1, 2, 22, 4, 5, 0, time.UTC); !info.Date.Equal(wd) {
		t.Errorf("date %v, want %v", info.Date, wd)
	}
	if info.Preview != "Hi Bob, how are you?" {
		t.Errorf("preview %q", info.Preview)
	}
	if p := info.Body.Params; len(p) != 1 || p[0] != (Param{"charset", "us-ascii"}) || info.Body.Encoding != "7BIT" {
		t.Errorf("params %v encoding %q", p, info.Body.Encoding)
	}
}

var alternativeMsg = crlf(`From: a@example.com
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

This is a MIME message.
--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait=
 please
--b1
Content-Type: text/html; charset=utf-8

<p>Caf&eacute;</p>
--b1--
epilogue
`)

func TestParseAlternative(t *testing.T) {
	info, err := ParseBytes([]byte(alternativeMsg))
	if err != nil {
		t.Fatal(err)
	}
	top := alternativeMsg[:strings.Index(alternativeMsg, "\r\n\r\n")+4]
	checkParts(t, alternativeMsg, info, []wantPart{
		{"", "multipart/alternative", top, alternativeMsg[len(top):], -1},
		{".1", "text/plain", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
			"Caf=C3=A9 au lait=\r\n please", 2},
		{".2", "text/html", "Content-Type: text/html; charset=utf-8\r\n\r\n", "<p>Caf&eacute;</p>", 1},
	})
	if info.Preview != "Café au lait please" {
		t.Errorf("preview %q", info.Preview)
	}
	if c := info.Body.Children[0]; c.Encoding != "QUOTED-PRINTABLE" || param(c.Params, "charset") != "utf-8" {
		t.Errorf("child 1: %+v", c)
	}
	if p := info.Body.Params; len(p) != 1 || p[0] != (Param{"boundary", "b1"}) {
		t.Errorf("top params %v", p)
	}
}

var mixedMsg = `From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.de>
To: team: a@example.com, "B, Bee" <b@example.com>;, c@example.com
Subject: =?UTF-8?B?w4RyZ2Vy?=
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain

plain text
--inner
Content-Type: text/html

<b>html</b>
--inner--

--outer
Content-Type: application/pdf; name="r.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment;
 filename*0*=UTF-8''Rechnung%20f%C3%BCr;
 filename*1=" 2024.pdf"
Content-ID: <pdf@x>
Content-Description: the bill
Content-Language: de, en
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Location: http://example.com/r.pdf

JVBERi0xLjQK
JVBERi0xLjQK
--outer--
`

func mixedWant(msg, nl string) []wantPart {
	n := func(s string) string { return strings.ReplaceAll(s, "\n", nl) }
	top := msg[:strings.Index(msg, nl+nl)+2*len(nl)]
	return []wantPart{
		{"", "multipart/mixed", top, msg[len(top):], -1},
		{".1", "multipart/alternative", n("Content-Type: multipart/alternative; boundary=\"inner\"\n\n"),
			n("--inner\nContent-Type: text/plain\n\nplain text\n--inner\nContent-Type: text/html\n\n<b>html</b>\n--inner--\n"), -1},
		{".1.1", "text/plain", n("Content-Type: text/plain\n\n"), "plain text", 1},
		{".1.2", "text/html", n("Content-Type: text/html\n\n"), "<b>html</b>", 1},
		{".2", "application/pdf", msg[strings.Index(msg, "Content-Type: application/pdf"):strings.Index(msg, "JVBER")],
			n("JVBERi0xLjQK\nJVBERi0xLjQK"), -1},
	}
}

func TestParseNestedMixed(t *testing.T) {
	for _, nl := range []string{"\r\n", "\n"} {
		msg := strings.ReplaceAll(mixedMsg, "\n", nl)
		info, err := ParseBytes([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		checkParts(t, msg, info, mixedWant(msg, nl))
		att := info.Body.Children[1]
		want := Part{
			Type: "application", Subtype: "pdf",
			Params:            []Param{{"name", "r.pdf"}},
			ID:                "<pdf@x>",
			Description:       "the bill",
			Encoding:          "BASE64",
			MD5:               "Q2hlY2sgSW50ZWdyaXR5IQ==",
			Disposition:       "attachment",
			DispositionParams: []Param{{"filename", "Rechnung für 2024.pdf"}},
			Language:          []string{"de", "en"},
			Location:          "http://example.com/r.pdf",
			HeaderStart:       att.HeaderStart, BodyStart: att.BodyStart, End: att.End, Lines: att.Lines,
		}
		if d := cmp.Diff(want, att); d != "" {
			t.Errorf("attachment (-want +got):\n%s", d)
		}
		env := info.Envelope
		if env.Subject != "=?UTF-8?B?w4RyZ2Vy?=" {
			t.Errorf("subject %q: must stay raw", env.Subject)
		}
		wantTo := []Address{
			{Mailbox: "team"},
			{Mailbox: "a", Host: "example.com"},
			{Name: "B, Bee", Mailbox: "b", Host: "example.com"},
			{},
			{Mailbox: "c", Host: "example.com"},
		}
		if d := cmp.Diff(wantTo, env.To); d != "" {
			t.Errorf("to (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]Address{{Name: "Jürgen", Mailbox: "j", Host: "example.de"}}, env.From); d != "" {
			t.Errorf("from (-want +got):\n%s", d)
		}
		if info.Preview != "plain text" {
			t.Errorf("preview %q", info.Preview)
		}
	}
}

var innerMsg = crlf(`From: Inner <inner@example.com>
Subject: inner subject
Date: 1 Feb 2020 10:00:00 +0000
Content-Type: multipart/mixed; boundary=in

--in
Content-Type: text/plain

inner body
--in--
`)

var rfc822Msg = crlf(`From: outer@example.com
Subject: fwd
Content-Type: multipart/mixed; boundary=out

--out
Content-Type: text/plain

see attached
--out
Content-Type: message/rfc822
Content-Disposition: attachment

`) + innerMsg + crlf(`--out--
`)

func TestParseRFC822(t *testing.T) {
	msg := rfc822Msg
	info, err := ParseBytes([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	top := msg[:strings.Index(msg, "\r\n\r\n")+4]
	innerHdr := innerMsg[:strings.Index(innerMsg, "\r\n\r\n")+4]
	innerBody := strings.TrimSuffix(innerMsg[len(innerHdr):], "\r\n")
	checkParts(t, msg, info, []wantPart{
		{"", "multipart/mixed", top, msg[len(top):], -1},
		{".1", "text/plain", "Content-Type: text/plain\r\n\r\n", "see attached", 1},
		{".2", "message/rfc822", "Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n",
			strings.TrimSuffix(innerMsg, "\r\n"), 10},
		{".2.m", "multipart/mixed", innerHdr, innerBody, -1},
		{".2.m.1", "text/plain", "Content-Type: text/plain\r\n\r\n", "inner body", 1},
	})
	env := info.Body.Children[1].Envelope
	if env == nil || env.Subject != "inner subject" || env.Date != "1 Feb 2020 10:00:00 +0000" ||
		len(env.Sender) != 1 || env.Sender[0] != (Address{Name: "Inner", Mailbox: "inner", Host: "example.com"}) {
		t.Errorf("inner envelope %+v", env)
	}
	if info.Preview != "see attached" {
		t.Errorf("preview %q", info.Preview)
	}
}

// TestParseBroken checks that malformed mail parses into something usable.
func TestParseBroken(t *testing.T) {
	deep := strings.Repeat("Content-Type: multipart/mixed; boundary=x\n\n--x\n", 200) + "body\n"
	tests := []struct {
		name string
		msg  string
		want []wantPart
	}{
		{"empty", "", []wantPart{{"", "text/plain", "", "", 0}}},
		{"header only, no newline", "Subject: x", []wantPart{{"", "text/plain", "Subject: x", "", 0}}},
		{"header only", "Subject: x\r\n", []wantPart{{"", "text/plain", "Subject: x\r\n", "", 0}}},
		{"no header", "Hello there\r\nsecond line", []wantPart{{"", "text/plain", "", "Hello there\r\nsecond line", 2}}},
		{"no blank line", "Subject: x\nThis is body\n", []wantPart{{"", "text/plain", "Subject: x\n", "This is body\n", 1}}},
		{"mbox From line", "From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody", []wantPart{
			{"", "text/plain", "From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\n", "body", 1}}},
		{"8-bit and garbage header", "Subject: Grüße\n\x00bad\n\nbody", []wantPart{
			{"", "text/plain", "Subject: Grüße\n", "\x00bad\n\nbody", 3}}},
		{"multipart without boundary", "Content-Type: multipart/mixed\n\n--x\nbody\n", []wantPart{
			{"", "text/plain", "Content-Type: multipart/mixed\n\n", "--x\nbody\n", 2}}},
		{"boundary never used", "Content-Type: multipart/mixed; boundary=x\n\nbody\n", []wantPart{
			{"", "text/plain", "Content-Type: multipart/mixed; boundary=x\n\n", "body\n", 1}}},
		{"unterminated multipart", "Content-Type: multipart/mixed; boundary=x\n\n--x\n\none\n--x\n\ntwo\n", []wantPart{
			{"", "multipart/mixed", "Content-Type: multipart/mixed; boundary=x\n\n", "--x\n\none\n--x\n\ntwo\n", -1},
			{".1", "text/plain", "\n", "one", 1},
			{".2", "text/plain", "\n", "two\n", 1}}},
		{"delimiter ends child header", "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/html\n--x--\n", []wantPart{
			{"", "multipart/mixed", "Content-Type: multipart/mixed; boundary=x\n\n", "--x\nContent-Type: text/html\n--x--\n", -1},
			{".1", "text/html", "Content-Type: text/html", "", 0}}},
		{"empty child bodies", "Content-Type: multipart/mixed; boundary=x\n\n--x\n\n--x\n\n\n--x--", []wantPart{
			{"", "multipart/mixed", "Content-Type: multipart/mixed; boundary=x\n\n", "--x\n\n--x\n\n\n--x--", -1},
			{".1", "text/plain", "\n", "", 0},
			{".2", "text/plain", "\n", "", 0}}},
		{"boundary with padding, nested outer ends inner", "Content-Type: multipart/mixed; boundary=o\n\n--o \t\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\nx\n--o--\n", []wantPart{
			{"", "multipart/mixed", "Content-Type: multipart/mixed; boundary=o\n\n", "--o \t\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\nx\n--o--\n", -1},
			{".1", "multipart/mixed", "Content-Type: multipart/mixed; boundary=i\n\n", "--i\n\nx", -1},
			{".1.1", "text/plain", "\n", "x", 1}}},
		{"digest default", "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: s\n\nb\n--d--", []wantPart{
			{"", "multipart/digest", "Content-Type: multipart/digest; boundary=d\n\n", "--d\n\nSubject: s\n\nb\n--d--", -1},
			{".1", "message/rfc822", "\n", "Subject: s\n\nb", 3},
			{".1.m", "text/plain", "Subject: s\n\n", "b", 1}}},
		{"bad content type", "Content-Type: garbage\n\nx", []wantPart{{"", "text/plain", "Content-Type: garbage\n\n", "x", 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParseBytes([]byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			checkParts(t, tt.msg, info, tt.want)
			checkInvariants(t, info, tt.msg)
		})
	}
	t.Run("deep", func(t *testing.T) {
		info, err := ParseBytes([]byte(deep))
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, info, deep)
		depth := 0
		for pt := &info.Body; len(pt.Children) > 0; pt = &pt.Children[0] {
			depth++
		}
		if depth != maxDepth {
			t.Errorf("depth %d, want %d", depth, maxDepth)
		}
	})
	t.Run("many parts", func(t *testing.T) {
		msg := "Content-Type: multipart/mixed; boundary=x\n\n" + strings.Repeat("--x\n\na\n", 2*maxParts)
		info, err := ParseBytes([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, info, msg)
		if n := len(info.Body.Children); n != maxParts-1 {
			t.Errorf("%d children, want %d", n, maxParts-1)
		}
	})
	t.Run("long lines", func(t *testing.T) {
		long := strings.Repeat("y", 3*maxLine)
		msg := "Subject: " + long + "\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n" + long + "\r\n--x--\r\n"
		info, err := ParseBytes([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, info, msg)
		if len(info.Body.Children) != 1 || msg[info.Body.Children[0].BodyStart:info.Body.Children[0].End] != long {
			t.Errorf("long body not found: %+v", info.Body)
		}
		if len(info.Envelope.Subject) != maxLine-len("Subject: ") {
			t.Errorf("subject of %d bytes kept", len(info.Envelope.Subject))
		}
	})
}

type shortReader struct{ s string }

func (r shortReader) ReadAt(p []byte, off int64) (int, error) {
	return strings.NewReader(r.s).ReadAt(p, off)
}

type errReader struct{}

func (errReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestParseErrors(t *testing.T) {
	if _, err := Parse(shortReader{"Subject: x\r\n\r\nbody"}, 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short input: err %v", err)
	}
	if _, err := Parse(errReader{}, 10); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("failing reader: err %v", err)
	}
}

func TestPreview(t *testing.T) {
	tests := []struct {
		name, msg, want string
	}{
		{"html only", "Content-Type: text/html; charset=iso-8859-1\n\n<html><head><title>T</title><style>p{}</style></head><body><p>Gr\xfc&szlig;e,</p>\n<p>&nbsp;&zwnj;Welt</p><!-- c --></body></html>",
			"Grüße, Welt"},
		{"base64", "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nw6TDtsO8\nIHRleHQ=\n", "äöü text"},
		{"attachment skipped", "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Disposition: attachment\n\nfile\n--x\nContent-Type: text/plain\n\nreal\n--x--", "real"},
		{"truncated", "\n" + strings.Repeat("word ", 100), strings.TrimSpace(strings.Repeat("word ", 52))[:previewRunes]},
		{"unknown charset", "Content-Type: text/plain; charset=x-nonsense\n\nplain", "plain"},
		{"windows-1252", "Content-Type: text/plain; charset=windows-1252\n\n\x93quoted\x94", "\u201cquoted\u201d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParseBytes([]byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			if info.Preview != tt.want {
				t.Errorf("preview %q, want %q", info.Preview, tt.want)
			}
		})
	}
}

func TestHeaderFields(t *testing.T) {
	hdr := "From: a@b\r\nSubject: one\r\n two\r\nto: c@d\r\nX-Bad line\r\nReceived: x\r\n\r\n"
	tests := []struct {
		names []string
		not   bool
		want  string
	}{
		{[]string{"SUBJECT", "To"}, false, "Subject: one\r\n two\r\nto: c@d\r\n\r\n"},
		{[]string{"subject", "received"}, true, "From: a@b\r\nto: c@d\r\n\r\n"},
		{[]string{"x-none"}, false, "\r\n"},
		{nil, true, "From: a@b\r\nSubject: one\r\n two\r\nto: c@d\r\nReceived: x\r\n\r\n"},
	}
	for _, tt := range tests {
		if got := string(HeaderFields([]byte(hdr), tt.names, tt.not)); got != tt.want {
			t.Errorf("HeaderFields(%v, %v) = %q, want %q", tt.names, tt.not, got, tt.want)
		}
	}
	if got := string(HeaderFields([]byte("Subject: x"), []string{"subject"}, false)); got != "Subject: x\r\n\r\n" {
		t.Errorf("unterminated header: %q", got)
	}
}

// checkInvariants checks the offset rules every parse must keep.
func checkInvariants(t testing.TB, info *Info, msg string) {
	t.Helper()
	if info.Body.HeaderStart != 0 || info.Body.End != info.Size || info.HeaderSize != info.Body.BodyStart {
		t.Fatalf("top part %d %d %d, size %d, header size %d",
			info.Body.HeaderStart, info.Body.BodyStart, info.Body.End, info.Size, info.HeaderSize)
	}
	checkPart(t, msg, &info.Body, 0, info.Size)
}

func checkPart(t testing.TB, msg string, pt *Part, lo, hi int64) {
	t.Helper()
	if !(lo <= pt.HeaderStart && pt.HeaderStart <= pt.BodyStart && pt.BodyStart <= pt.End && pt.End <= hi) {
		t.Fatalf("part %s/%s offsets %d %d %d outside [%d, %d]", pt.Type, pt.Subtype, pt.HeaderStart, pt.BodyStart, pt.End, lo, hi)
	}
	body := msg[pt.BodyStart:pt.End]
	lines := int64(strings.Count(body, "\n"))
	if body != "" && !strings.HasSuffix(body, "\n") {
		lines++
	}
	if pt.Lines != lines {
		t.Fatalf("part %s/%s at %d: %d lines, want %d", pt.Type, pt.Subtype, pt.BodyStart, pt.Lines, lines)
	}
	if pt.Type == "" || pt.Subtype == "" || pt.Encoding == "" {
		t.Fatalf("part without type or encoding: %+v", pt)
	}
	if pt.Type == "multipart" && len(pt.Children) == 0 {
		t.Fatalf("multipart without children")
	}
	if isMessage(pt) != (pt.Message != nil) || (pt.Message != nil) != (pt.Envelope != nil) {
		t.Fatalf("message/rfc822 part %s/%s with message %v", pt.Type, pt.Subtype, pt.Message != nil)
	}
	prev := pt.BodyStart
	for i := range pt.Children {
		c := &pt.Children[i]
		checkPart(t, msg, c, prev, pt.End)
		prev = c.End
	}
	if m := pt.Message; m != nil {
		if m.HeaderStart != pt.BodyStart || m.End != pt.End {
			t.Fatalf("enclosed message %d-%d, part body %d-%d", m.HeaderStart, m.End, pt.BodyStart, pt.End)
		}
		checkPart(t, msg, m, pt.BodyStart, pt.End)
	}
}
