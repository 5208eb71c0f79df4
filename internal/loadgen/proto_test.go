package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// fakeConn returns a conn that reads the given server output.
func fakeConn(server string) *conn {
	return &conn{r: bufio.NewReaderSize(strings.NewReader(server), 16)}
}

func TestParseSMTPLine(t *testing.T) {
	tests := []struct {
		line     string
		code     int
		more     bool
		text     string
		wantFail bool
	}{
		{"250 OK", 250, false, "OK", false},
		{"250-PIPELINING", 250, true, "PIPELINING", false},
		{"354", 354, false, "", false},
		{"550 5.1.1 no such user", 550, false, "5.1.1 no such user", false},
		{"25", 0, false, "", true},
		{"abc def", 0, false, "", true},
		{"250_x", 0, false, "", true},
		{"199 too low", 0, false, "", true},
	}
	for _, tt := range tests {
		code, more, text, err := parseSMTPLine([]byte(tt.line))
		if (err != nil) != tt.wantFail || code != tt.code || more != tt.more || text != tt.text {
			t.Errorf("parseSMTPLine(%q) = %d, %v, %q, %v", tt.line, code, more, text, err)
		}
	}
}

func TestSMTPReply(t *testing.T) {
	c := &smtpClient{conn: fakeConn("250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n" +
		"550 5.1.1 unknown\r\n250-a\r\n251 b\r\n")}
	code, text, err := c.reply()
	if err != nil || code != 250 || text != "mx.test hello\nPIPELINING\nSIZE 1000\n8BITMIME" {
		t.Fatalf("multi-line reply = %d %q %v", code, text, err)
	}
	_, err = c.expect("RCPT", 2)
	var re *replyError
	if !errors.As(err, &re) || reason(err) != "RCPT 550" {
		t.Fatalf("550 reply: err %v, reason %q", err, reason(err))
	}
	if _, _, err := c.reply(); err == nil {
		t.Fatal("a reply whose code changes between lines was accepted")
	}
}

func TestIMAPReadResp(t *testing.T) {
	server := "* 1 FETCH (BODY[] {12}\r\nhello\r\nworld FLAGS (\\Seen))\r\n" +
		"* 2 FETCH (ENVELOPE (\"d\" {3}\r\na\r\n NIL) BODY[] {0}\r\n)\r\n" +
		"* 5 EXISTS\r\n" +
		"* 4 EXPUNGE\r\n* 2 expunge\r\n" +
		"a1 OK [APPENDUID 1795 42] Append completed.\r\n"
	c := &imapClient{conn: &conn{r: bufio.NewReader(iotest.OneByteReader(strings.NewReader(server)))}}
	line, err := c.readResp()
	if err != nil || string(line) != `* 1 FETCH (BODY[] {12} FLAGS (\Seen))` || c.lit != 12 {
		t.Fatalf("first response = %q, lit %d, %v", line, c.lit, err)
	}
	line, err = c.readResp()
	if err != nil || string(line) != `* 2 FETCH (ENVELOPE ("d" {3} NIL) BODY[] {0})` || c.lit != 3 {
		t.Fatalf("second response = %q, lit %d, %v", line, c.lit, err)
	}
	c.tag = 0
	text, err := c.waitTagged("APPEND", "a1", nil)
	if err != nil || c.exists != 3 || appendUID(text) != 42 {
		t.Fatalf("tagged: %q %v, exists %d, uid %d", text, err, c.exists, appendUID(text))
	}
}

func TestIMAPHelpers(t *testing.T) {
	for line, want := range map[string]int{"x {5}": 5, "x {12+}": 12, "x {}": -1, "x {a}": -1, "x": -1, "}": -1} {
		n, ok := literalSize([]byte(line))
		if (want >= 0) != ok || (ok && n != want) {
			t.Errorf("literalSize(%q) = %d, %v", line, n, ok)
		}
	}
	if st, text, ok := parseTagged([]byte("a12 no [ALERT] nope"), "a12"); !ok || st != "NO" || text != "[ALERT] nope" {
		t.Errorf("parseTagged = %q %q %v", st, text, ok)
	}
	if _, _, ok := parseTagged([]byte("a123 OK"), "a12"); ok {
		t.Error("parseTagged matched tag a12 against a123")
	}
	if uid := appendUID("[appenduid 7 99] done"); uid != 99 {
		t.Errorf("appendUID = %d", uid)
	}
	if uid := appendUID("Append completed."); uid != 0 {
		t.Errorf("appendUID without code = %d", uid)
	}
	c := &imapClient{}
	c.noteCaps([]byte("* OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] ready"))
	if !c.caps["UIDPLUS"] || !c.caps["IDLE"] || c.caps["READY"] {
		t.Errorf("caps = %v", c.caps)
	}
	if q := quote(`a"b\c`); q != `"a\"b\\c"` {
		t.Errorf("quote = %s", q)
	}
}

func TestPOP3Parsing(t *testing.T) {
	if ok, text, err := pop3Status([]byte("+OK 2 messages")); !ok || text != "2 messages" || err != nil {
		t.Errorf("+OK: %v %q %v", ok, text, err)
	}
	if ok, _, err := pop3Status([]byte("-ERR no")); ok || err != nil {
		t.Errorf("-ERR: %v %v", ok, err)
	}
	if _, _, err := pop3Status([]byte("* OK imap")); err == nil {
		t.Error("an IMAP greeting was accepted as POP3")
	}
	if n, size, err := parseStat("3 4821"); n != 3 || size != 4821 || err != nil {
		t.Errorf("parseStat = %d %d %v", n, size, err)
	}
	if _, _, err := parseStat("x"); err == nil {
		t.Error("parseStat accepted garbage")
	}
}

// naiveDotBody is the line-by-line reading skipDotBody must agree with.
func naiveDotBody(s string) (int, string, bool) {
	total := 0
	for {
		i := strings.Index(s, "\r\n")
		if i < 0 {
			return 0, "", false
		}
		line := s[:i]
		s = s[i+2:]
		if line == "." {
			return total, s, true
		}
		total += len(line) + 2
	}
}

func TestSkipDotBody(t *testing.T) {
	bodies := []string{
		".\r\n",
		"a\r\n.\r\n",
		"..\r\n.\r\n",
		"line one\r\n..stuffed\r\n\r\nlast\r\n.\r\n",
		strings.Repeat("x", 100) + "\r\n.x\r\n" + strings.Repeat("y", 37) + "\r\n.\r\n",
	}
	for _, body := range bodies {
		in := body + "+OK next\r\n"
		want, rest, _ := naiveDotBody(in)
		for _, size := range []int{16, 17, 19, 4096} {
			for _, oneByte := range []bool{false, true} {
				var src = bufio.NewReaderSize(strings.NewReader(in), size)
				if oneByte {
					src = bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), size)
				}
				got, err := skipDotBody(src)
				left := readAll(src)
				if err != nil || got != want || left != rest {
					t.Errorf("body %q size %d onebyte %v: got %d (%v), rest %q; want %d, rest %q", body, size, oneByte, got, err, left, want, rest)
				}
			}
		}
	}
	if _, err := skipDotBody(bufio.NewReader(strings.NewReader("no end\r\n"))); err == nil {
		t.Error("an unterminated body gave no error")
	}
}

func FuzzSkipDotBody(f *testing.F) {
	f.Add("a\r\n.\r\n+OK\r\n")
	f.Add(".\r\n")
	f.Add("..\r\n\r\n.\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		if strings.ContainsAny(strings.ReplaceAll(in, "\r\n", ""), "\r\n") {
			return // bare CR or LF: not a POP3 stream, skipDotBody need not agree
		}
		want, rest, ok := naiveDotBody(in)
		r := bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(in)), 16)
		got, err := skipDotBody(r)
		if !ok {
			// The naive reader needs CRLF lines; skipDotBody only needs the
			// terminator. Both must at least agree when skipDotBody ends.
			return
		}
		left := readAll(r)
		if err != nil || got != want || left != rest {
			t.Fatalf("%q: got %d %v rest %q; want %d rest %q", in, got, err, left, want, rest)
		}
	})
}

func FuzzIMAPResponse(f *testing.F) {
	f.Add("* 1 FETCH (BODY[] {5}\r\nhello)\r\na1 OK done\r\n")
	f.Add("* 3 EXISTS\r\n+ go\r\n")
	f.Add("a1 OK [APPENDUID 1 2] x\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		c := &imapClient{conn: fakeConn(in)}
		c.waitTagged("X", "a1", func([]byte) {})
		c = &imapClient{conn: fakeConn(in)}
		c.waitContinue("X", "a1")
		appendUID(in)
	})
}

func TestDotStuffAndMessage(t *testing.T) {
	got := string(dotStuff([]byte("a\n.b\r\n..c\nlast")))
	if want := "a\r\n..b\r\n...c\r\nlast\r\n"; got != want {
		t.Errorf("dotStuff = %q, want %q", got, want)
	}
	m := makeMessage(4096, "a@x", "b@y", "id1")
	if len(m) != 4096 || !bytes.HasSuffix(m, []byte("\r\n")) || bytes.Contains(m, []byte("\n.")) {
		t.Errorf("makeMessage: len %d, suffix %q", len(m), m[len(m)-2:])
	}
}

func TestReadMbox(t *testing.T) {
	mbox := "From MAILER-DAEMON Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From the start\nbody\n\n" +
		"From MAILER-DAEMON Mon Jan  1 00:00:01 2024\nSubject: two\n\nx\n"
	msgs := ReadMbox([]byte(mbox))
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	if string(msgs[0]) != "Subject: one\n\nFrom the start\nbody\n" || string(msgs[1]) != "Subject: two\n\nx\n" {
		t.Errorf("messages = %q", msgs)
	}
}

func readAll(r *bufio.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}
