package mime7bit

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// convert runs Prepare and WriteTo, twice, and checks that both writes
// agree and that the result may travel over a 7-bit transport.
func convert(t *testing.T, msg string, opts Options) string {
	t.Helper()
	c, err := Prepare(strings.NewReader(msg), int64(len(msg)), opts)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	var a, b bytes.Buffer
	n, err := c.WriteTo(&a)
	if err != nil || n != int64(a.Len()) {
		t.Fatalf("WriteTo: %d, %v (wrote %d)", n, err, a.Len())
	}
	if _, err := c.WriteTo(&b); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("second WriteTo differs (%v)", err)
	}
	if !opts.UTF8Header {
		check7bit(t, a.Bytes())
	}
	return a.String()
}

// check7bit fails unless out is octets 1..127 in CRLF lines of at most
// 998 octets.
func check7bit(t testing.TB, out []byte) {
	t.Helper()
	var m meter
	m.Write(out)
	m.close()
	if !m.clean() {
		for i, l := range strings.Split(string(out), "\n") {
			if len(l) > maxLine+1 || strings.ContainsFunc(strings.TrimSuffix(l, "\r"), func(r rune) bool { return r == '\r' || r == 0 || r >= 0x80 }) {
				t.Fatalf("line %d not 7-bit: %.120q", i+1, l)
			}
		}
		t.Fatalf("output not 7-bit clean: %q", out)
	}
}

// leaf is one leaf part as an independent MIME reader (go-message)
// decodes it.
type leaf struct {
	ctype string
	cte   string
	body  string
}

// leaves walks msg with go-message, into multiparts and enclosed
// messages.
func leaves(t *testing.T, msg string) []leaf {
	t.Helper()
	e, err := message.Read(strings.NewReader(msg))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("reading message: %v", err)
	}
	return walk(t, e)
}

func walk(t *testing.T, e *message.Entity) []leaf {
	t.Helper()
	ct, _, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		var out []leaf
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return out
			}
			if err != nil && !message.IsUnknownCharset(err) {
				t.Fatalf("next part: %v", err)
			}
			out = append(out, walk(t, p)...)
		}
	}
	if ct == "message/rfc822" {
		inner, err := message.Read(e.Body)
		if err != nil && !message.IsUnknownCharset(err) {
			t.Fatalf("enclosed message: %v", err)
		}
		return walk(t, inner)
	}
	b, err := io.ReadAll(e.Body)
	if err != nil {
		t.Fatalf("reading %s part: %v", ct, err)
	}
	return []leaf{{ctype: ct, cte: e.Header.Get("Content-Transfer-Encoding"), body: string(b)}}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      Class
	}{
		{"ascii", "Subject: x\r\n\r\nhello\r\n", SevenBit},
		{"no body", "Subject: x\r\n", SevenBit},
		{"8-bit header only", "Subject: caf\xc3\xa9\r\n\r\nhello\r\n", SevenBit},
		{"utf-8 body", "Subject: x\r\n\r\ncaf\xc3\xa9\r\n", EightBit},
		{"NUL", "Subject: x\r\n\r\na\x00b\r\n", Binary},
		{"bare LF", "Subject: x\r\n\r\na\nb\r\n", Binary},
		{"bare CR", "Subject: x\r\n\r\na\rb\r\n", Binary},
		{"CR at the end", "Subject: x\r\n\r\nab\r", Binary},
		{"line of 998", "Subject: x\r\n\r\n" + strings.Repeat("a", 998) + "\r\n", SevenBit},
		{"line of 999", "Subject: x\r\n\r\n" + strings.Repeat("a", 999) + "\r\n", Binary},
		{"long header line", "Subject: " + strings.Repeat("a", 2000) + "\r\n\r\nx\r\n", SevenBit},
		{"LF-only blank line", "Subject: x\n\ncaf\xc3\xa9", EightBit},
	} {
		got, err := Classify(strings.NewReader(tc.msg))
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// A well-formed 7-bit message comes out as it went in, byte for byte:
// conversion only touches what needs it.
func TestSevenBitUntouched(t *testing.T) {
	msg := crlf(`From: a@here.test
To: x@there.test
Subject: report
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is a multi-part message in MIME format.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=us-ascii

Hello.
--inner
Content-Type: text/html; charset=us-ascii
Content-Transfer-Encoding: quoted-printable

<p>Hello=2E</p>
--inner--

--outer
Content-Type: message/rfc822

From: b@else.test
Subject: inner

Inner body.

--outer
Content-Type: application/pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
epilogue
`)
	if c, _ := Classify(strings.NewReader(msg)); c != SevenBit {
		t.Fatalf("class %v", c)
	}
	if got := convert(t, msg, Options{}); got != msg {
		t.Errorf("changed:\n%s\nwant:\n%s", got, msg)
	}
}

func TestTextQuotedPrintable(t *testing.T) {
	text := "Caf\xc3\xa9 cr\xc3\xa8me = br\xc3\xbbl\xc3\xa9e \r\n" + strings.Repeat("\xd0\x96", 700) + "\r\n-- \r\nsig\ttab\t\r\n.dot\r\nend "
	msg := "From: a@here.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text
	got := convert(t, msg, Options{})
	if !strings.Contains(got, "\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9") || strings.Contains(got, "8bit") {
		t.Errorf("header or encoding:\n%s", got)
	}
	for _, l := range strings.Split(got, "\r\n") {
		if len(l) > qpLine {
			t.Errorf("QP line of %d: %q", len(l), l)
		}
	}
	ls := leaves(t, got)
	if len(ls) != 1 || ls[0].body != text {
		t.Errorf("decoded %q\nwant %q", ls, text)
	}
}

func TestBinaryAttachmentBase64(t *testing.T) {
	var bin []byte
	for i := range 3000 {
		bin = append(bin, byte(i*7+i/256))
	}
	bin = append(bin, "\r\n-b\r\n\n\r"...) // bare LF and CR, and not a delimiter
	msg := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n") +
		string(bin) + "\r\n--b--\r\n"
	if c, _ := Classify(strings.NewReader(msg)); c != Binary {
		t.Fatalf("class %v", c)
	}
	got := convert(t, msg, Options{})
	ls := leaves(t, got)
	if len(ls) != 2 || ls[0].body != "see attached" || ls[1].cte != "base64" || ls[1].body != string(bin) {
		t.Fatalf("leaves %q", ls)
	}
}

func TestNestedMultipartAndEnclosed(t *testing.T) {
	html := "<p>\xe2\x82\xac 5</p>"
	inner := "Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
	msg := crlf(`From: a@here.test
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"
Content-Transfer-Encoding: 8bit

--m
Content-Type: multipart/alternative; boundary="a"

--a
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

€ 5
--a
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit

`) + html + crlf(`
--a--
--m
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

From: b@else.test
Subject: forwarded
Content-Type: text/plain; charset=utf-8

`) + inner + crlf(`
--m
Content-Type: image/png
Content-Transfer-Encoding: 8bit

`) + "\x89PNG\r\n\x1a\n" + "\r\n--m--\r\n"
	got := convert(t, msg, Options{})
	ls := leaves(t, got)
	want := []leaf{
		{"text/plain", "quoted-printable", "€ 5"},
		{"text/html", "quoted-printable", html},
		{"text/plain", "quoted-printable", inner},
		{"image/png", "base64", "\x89PNG\r\n\x1a\n"},
	}
	if len(ls) != len(want) {
		t.Fatalf("leaves %q", ls)
	}
	for i := range want {
		if ls[i] != want[i] {
			t.Errorf("leaf %d: %q, want %q", i, ls[i], want[i])
		}
	}
	// The containers are now 7bit, the enclosed message's header as it was.
	if strings.Count(got, "Content-Transfer-Encoding: 7bit") != 2 || strings.Contains(got, "8bit") ||
		!strings.Contains(got, "\r\nFrom: b@else.test\r\nSubject: forwarded\r\n") {
		t.Errorf("converted:\n%s", got)
	}
}

func TestNonMIME(t *testing.T) {
	for _, tc := range []struct {
		name, body, charset string
	}{
		{"utf-8", "Gr\xc3\xbc\xc3\x9fe\r\n", "utf-8"},
		{"latin-1", "Gr\xfc\xdfe\r\n", "unknown-8bit"},
		{"long ascii line", strings.Repeat("x", 1500) + "\r\n", "us-ascii"},
	} {
		msg := "From: a@here.test\r\nSubject: plain\r\n\r\n" + tc.body
		got := convert(t, msg, Options{})
		hdr := "From: a@here.test\r\nSubject: plain\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=" + tc.charset +
			"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
		if !strings.HasPrefix(got, hdr) {
			t.Errorf("%s: header:\n%s", tc.name, got)
		}
		if ls := leaves(t, got); len(ls) != 1 || ls[0].body != tc.body {
			t.Errorf("%s: decoded %q", tc.name, ls)
		}
	}
}

func TestLongLinesInSevenBitPart(t *testing.T) {
	long := strings.Repeat("0123456789", 120)
	msg := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\n") +
		long + "\r\n" + long + crlf("\n--b\nContent-Type: application/json\n\n") + long + "\r\n--b--\r\n"
	got := convert(t, msg, Options{})
	ls := leaves(t, got)
	if len(ls) != 2 || ls[0].cte != "quoted-printable" || ls[0].body != long+"\r\n"+long ||
		ls[1].cte != "base64" || ls[1].body != long {
		t.Errorf("leaves %q", ls)
	}
}

// Broken encodings are mended, not refused: base64 on one long line, and
// quoted-printable with raw 8-bit octets.
func TestMendEncodings(t *testing.T) {
	raw := bytes.Repeat([]byte("binary\x00\xff"), 300)
	b64 := mimeBase64(raw)
	qp := "Caf\xc3\xa9 =C3=A9 soft=\r\nbreak " + strings.Repeat("x", 1200) + "\r\n"
	msg := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n") +
		b64 + crlf("\n--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n") + qp + "--b--\r\n"
	got := convert(t, msg, Options{})
	ls := leaves(t, got)
	// The last CRLF is the delimiter's (RFC 2046 §5.1.1).
	want := "Caf\xc3\xa9 \xc3\xa9 softbreak " + strings.Repeat("x", 1200)
	if len(ls) != 2 || ls[0].body != string(raw) || ls[1].body != want {
		t.Errorf("leaves %.200q", ls)
	}
}

func mimeBase64(b []byte) string {
	var s strings.Builder
	bw := bufio.NewWriter(&s)
	w := newBase64Writer(bw)
	w.Write(b)
	w.finish(false)
	bw.Flush()
	return strings.ReplaceAll(s.String(), "\r\n", "") // one long line
}

func TestPreambleAndEpilogue(t *testing.T) {
	msg := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\npr\xc3\xa9ambule\n--b\nContent-Type: text/plain; charset=utf-8\n\n\xc3\xa9\n--b--\n\xc3\xa9pilogue\n")
	got := convert(t, msg, Options{})
	want := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n=C3=A9\n--b--\n")
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestUnterminatedMultipartClosed(t *testing.T) {
	msg := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nla\xc3\xa9\n")
	got := convert(t, msg, Options{})
	if !strings.HasSuffix(got, "la=C3=A9\r\n\r\n--b--\r\n") {
		t.Errorf("got %q", got)
	}
	if ls := leaves(t, got); len(ls) != 1 || ls[0].body != "la\xc3\xa9\r\n" {
		t.Errorf("leaves %q", ls)
	}
}

func TestUnconvertible(t *testing.T) {
	for _, tc := range []struct{ name, msg string }{
		{"8-bit part header", crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; name=\"caf\xc3\xa9\"\n\n\xc3\xa9\n--b--\n")},
		{"long header line", "Subject: " + strings.Repeat("a", 1000) + "\r\n\r\n\xc3\xa9\r\n"},
		{"multipart without delimiter", crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\xc3\xa9\n")},
		{"unknown encoding", crlf("MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\n\xc3\xa9\n")},
		{"message/partial", crlf("MIME-Version: 1.0\nContent-Type: message/partial; id=x; number=1\n\n\xc3\xa9\n")},
	} {
		_, err := Prepare(strings.NewReader(tc.msg), int64(len(tc.msg)), Options{})
		if !errors.Is(err, ErrUnconvertible) {
			t.Errorf("%s: %v, want ErrUnconvertible", tc.name, err)
		}
	}
	// With SMTPUTF8 the 8-bit part header may go.
	msg := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; name=\"caf\xc3\xa9\"\n\n\xc3\xa9\n--b--\n")
	got := convert(t, msg, Options{UTF8Header: true})
	if !strings.Contains(got, "name=\"caf\xc3\xa9\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n") {
		t.Errorf("got %q", got)
	}
}

// Whatever a line of QP starts with, it is never a delimiter, even when
// the decoded text holds one (a quoted-printable part mended).
func TestNoDelimiterInEncodedText(t *testing.T) {
	msg := crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n\xe9=0D=0A--b=0D=0A--b--\n--b--\n")
	got := convert(t, msg, Options{})
	ls := leaves(t, got)
	if len(ls) != 1 || ls[0].body != "\xe9\r\n--b\r\n--b--" {
		t.Errorf("leaves %q\n%s", ls, got)
	}
}
