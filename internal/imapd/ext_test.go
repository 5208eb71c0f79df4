package imapd

import (
	"bufio"
	"compress/flate"
	"context"
	"encoding/base64"
	"io"
	"strings"
	"testing"
)

func TestModUTF7(t *testing.T) {
	for _, tc := range []struct{ utf8, mutf7 string }{
		{"INBOX", "INBOX"},
		{"Entwürfe", "Entw&APw-rfe"},
		{"a&b", "a&-b"},
		{"日本語", "&ZeVnLIqe-"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"😀", "&2D3eAA-"},
	} {
		if got := encodeMUTF7(tc.utf8); got != tc.mutf7 {
			t.Errorf("encode(%q) = %q, want %q", tc.utf8, got, tc.mutf7)
		}
		if got, err := decodeMUTF7(tc.mutf7); err != nil || got != tc.utf8 {
			t.Errorf("decode(%q) = %q, %v", tc.mutf7, got, err)
		}
	}
	for _, bad := range []string{"&", "&Jjo", "&AGE-", "é", "&ZeVnLIqe"} {
		if _, err := decodeMUTF7(bad); err == nil {
			t.Errorf("decode(%q) accepted", bad)
		}
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"*", "a/b/c", true}, {"%", "a/b", false}, {"%", "a", true}, {"a/%", "a/b", true},
		{"a/%", "a/b/c", false}, {"a*c", "a/b/c", true}, {"INBOX", "INBOX", true}, {"%/%", "a/b", true},
	} {
		if got := matchPattern(tc.pat, tc.name); got != tc.want {
			t.Errorf("match(%q, %q) = %v", tc.pat, tc.name, got)
		}
	}
}

func TestParserPieces(t *testing.T) {
	p := newParser(nil, []byte(`1:3,5,*:7 $ "a \"q\" \\" atom]x (\Seen $Kw)`))
	set, err := p.seqSet()
	if err != nil || len(set.ranges) != 3 || set.ranges[2] != (seqRange{0, 7}) {
		t.Fatalf("seqSet = %+v, %v", set, err)
	}
	if p.sp() != nil || !p.take('$') || p.sp() != nil {
		t.Fatal("separators")
	}
	if s, err := p.astring(); err != nil || s != `a "q" \` {
		t.Fatalf("quoted = %q, %v", s, err)
	}
	p.sp()
	if s, err := p.astring(); err != nil || s != "atom]x" {
		t.Fatalf("astring = %q, %v", s, err)
	}
	p.sp()
	if f, err := p.flagList(); err != nil || strings.Join(f, ",") != `\Seen,$Kw` {
		t.Fatalf("flags = %q, %v", f, err)
	}
	if err := p.end(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"0", "1:", "a", "1,,2"} {
		p := newParser(nil, []byte(bad))
		if _, err := p.seqSet(); err == nil && p.end() == nil {
			t.Errorf("seqSet(%q) accepted", bad)
		}
	}
}

func TestCondstoreQresync(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	for range 3 {
		e.put("INBOX", testMsg)
	}
	c := e.login()
	c.cmd("e ENABLE QRESYNC")
	sel := c.cmd("s SELECT INBOX")
	var hms string
	for _, l := range sel {
		if strings.HasPrefix(l, "* OK [HIGHESTMODSEQ ") {
			hms = strings.Fields(l)[3]
			hms = strings.TrimSuffix(hms, "]")
		}
	}
	if hms == "" {
		t.Fatalf("no HIGHESTMODSEQ: %q", sel)
	}
	out := c.cmd(`st STORE 1 +FLAGS (\Seen)`)
	if !has(out, "MODSEQ (") {
		t.Fatalf("STORE without MODSEQ: %q", out)
	}
	// UNCHANGEDSINCE older than the message fails with MODIFIED.
	_, st := c.run(`u STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\Answered)`)
	if !strings.HasPrefix(st, "OK [MODIFIED 1]") {
		t.Fatalf("conditional STORE: %q", st)
	}
	c.cmd(`d STORE 3 +FLAGS.SILENT (\Deleted)`)
	c.cmd("x EXPUNGE")
	out = c.cmd("f UID FETCH 1:* (FLAGS) (CHANGEDSINCE " + hms + " VANISHED)")
	if !has(out, "* VANISHED (EARLIER) 3") || !has(out, `UID 1 FLAGS (\Seen) MODSEQ`) || has(out, "UID 2 ") {
		t.Fatalf("CHANGEDSINCE VANISHED: %q", out)
	}
	c.cmd("c CLOSE")
	// A QRESYNC reselect reports the expunge and the flag change.
	out = c.cmd("s2 SELECT INBOX (QRESYNC (" + uitoa(e.mailbox("INBOX").UIDValidity) + " " + hms + "))")
	if !has(out, "* VANISHED (EARLIER) 3") || !has(out, `FLAGS (\Seen)`) {
		t.Fatalf("QRESYNC SELECT: %q", out)
	}
	// Another session's expunge arrives as VANISHED.
	e2 := e.login()
	e2.cmd("s SELECT INBOX")
	e2.cmd(`a STORE 1 +FLAGS.SILENT (\Deleted)`)
	e2.cmd("b EXPUNGE")
	if out := c.cmd("n NOOP"); !has(out, "* VANISHED 1") {
		t.Fatalf("VANISHED: %q", out)
	}
}

func TestSearchExtensions(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	for i := range 5 {
		if i%2 == 0 {
			e.put("INBOX", testMsg, `\Seen`)
		} else {
			e.put("INBOX", multipartMsg)
		}
	}
	c := e.login()
	c.cmd("s SELECT INBOX")
	out := c.cmd("a SEARCH RETURN (MIN MAX COUNT) UNSEEN")
	if !has(out, `* ESEARCH (TAG "a") MIN 2 MAX 4 COUNT 2`) {
		t.Fatalf("ESEARCH: %q", out)
	}
	c.cmd("b UID SEARCH RETURN (SAVE) SEEN")
	if out := c.cmd("c UID FETCH $ (UID)"); len(out) != 3 {
		t.Fatalf("FETCH $: %q", out)
	}
	if out := c.cmd(`d SEARCH CHARSET UTF-8 OR BODY needle SUBJECT "hello" NOT 1`); !has(out, "* SEARCH 2 3 4 5") {
		t.Fatalf("OR/NOT: %q", out)
	}
	if _, st := c.run("e SEARCH CHARSET KOI8-R ALL"); !strings.HasPrefix(st, "NO [BADCHARSET") {
		t.Fatalf("charset: %q", st)
	}
	if out := c.cmd(`f SEARCH HEADER Message-ID "<1@example.org>" SENTBEFORE 3-Jan-2006 SMALLER 100000`); !has(out, "* SEARCH 1 3 5") {
		t.Fatalf("HEADER/SENTBEFORE: %q", out)
	}
	if out := c.cmd(`g SEARCH FROM carol TO dave`); !has(out, "* SEARCH 2 4") {
		t.Fatalf("FROM/TO: %q", out)
	}
	c.cmd("h ENABLE IMAP4rev2")
	if out := c.cmd("i UID SEARCH 2:3"); !has(out, `* ESEARCH (TAG "i") UID ALL 2:3`) {
		t.Fatalf("rev2 SEARCH: %q", out)
	}
}

func TestListExtended(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	c := e.login()
	c.cmd("a CREATE a/b/c")
	c.cmd("b SUBSCRIBE a/b")
	out := c.cmd(`l LIST "" %`)
	if !has(out, `* LIST (\HasChildren) "/" a`) || !has(out, `\Sent) "/" Sent`) || has(out, "a/b") {
		t.Fatalf("LIST %%: %q", out)
	}
	out = c.cmd(`l2 LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES))`)
	if !has(out, `* LIST (\HasChildren \Subscribed) "/" a/b`) || !has(out, `* STATUS a/b (MESSAGES 0)`) {
		t.Fatalf("LIST SUBSCRIBED: %q", out)
	}
	out = c.cmd(`l3 LIST (SPECIAL-USE) "" "*"`)
	if len(out) != 5 {
		t.Fatalf("LIST SPECIAL-USE: %q", out)
	}
	if out := c.cmd(`l4 LIST "" ""`); !has(out, `* LIST (\Noselect) "/" ""`) {
		t.Fatalf("LIST root: %q", out)
	}
	if out := c.cmd(`l5 LSUB "" "*"`); !has(out, `* LSUB () "/" a/b`) {
		t.Fatalf("LSUB: %q", out)
	}
	c.cmd(`c CREATE Spam (USE (\Junk))`)
	c.cmd("d RENAME a x")
	if out := c.cmd(`l6 LIST "" "x/*"`); !has(out, `"/" x/b/c`) {
		t.Fatalf("after RENAME: %q", out)
	}
	c.cmd("e DELETE x/b/c")
	for _, bad := range []string{"f CREATE a//b", `g CREATE "a\x01"`, "h CREATE " + strings.Repeat("x/", 20) + "x", "i DELETE INBOX"} {
		if _, st := c.run(bad); !strings.HasPrefix(st, "NO") && !strings.HasPrefix(st, "BAD") {
			t.Errorf("%s: %q", bad, st)
		}
	}
	c.cmd("j ENABLE UTF8=ACCEPT")
	c.cmd(`k CREATE "Ordner/Entwürfe"`)
	if got := e.mailbox("Ordner/Entwürfe"); got.Name == "" {
		t.Fatal("UTF-8 name not stored")
	}
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPass))
	c := e.dial()
	c.cmd("a AUTHENTICATE PLAIN " + ir)
	c = e.dial()
	c.Send("a AUTHENTICATE PLAIN")
	c.Expect("+ ")
	c.Send(ir)
	if _, st := c.until("a"); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	c = e.dial()
	c.Send("a AUTHENTICATE LOGIN")
	c.Expect("+ ")
	c.Send(base64.StdEncoding.EncodeToString([]byte(testUser)))
	c.Expect("+ ")
	c.Send(base64.StdEncoding.EncodeToString([]byte(testPass)))
	if _, st := c.until("a"); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	c = e.dial()
	bad := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00wrong"))
	if _, st := c.run("a AUTHENTICATE PLAIN " + bad); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Fatal(st)
	}
	c.Send("b AUTHENTICATE PLAIN")
	c.Expect("+ ")
	c.Send("*")
	if _, st := c.until("b"); !strings.HasPrefix(st, "BAD") {
		t.Fatal(st)
	}
	c.cmd("c ID (\"name\" \"test\")")
}

func TestQuota(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	if err := e.st.SetQuota(context.Background(), e.acct.ID, 10<<20); err != nil {
		t.Fatal(err)
	}
	e.put("INBOX", testMsg)
	c := e.login()
	if out := c.cmd("q GETQUOTAROOT INBOX"); !has(out, `* QUOTAROOT INBOX ""`) || !has(out, `* QUOTA "" (STORAGE 1 10240)`) {
		t.Fatalf("GETQUOTAROOT: %q", out)
	}
	if _, st := c.run(`s SETQUOTA "" (STORAGE 1)`); !strings.HasPrefix(st, "NO") {
		t.Fatal(st)
	}
}

func TestCompress(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	e.put("INBOX", testMsg)
	c := e.login()
	c.cmd("z COMPRESS DEFLATE")
	zw, _ := flate.NewWriter(c.Conn, flate.DefaultCompression)
	zr := bufio.NewReader(flate.NewReader(c.Conn))
	io.WriteString(zw, "n NOOP\r\nf SELECT INBOX\r\ng FETCH 1 BODY.PEEK[]\r\n")
	zw.Flush()
	var got []string
	for {
		l, err := zr.ReadString('\n')
		if err != nil {
			t.Fatalf("compressed read: %v after %q", err, got)
		}
		got = append(got, l)
		if strings.HasPrefix(l, "g OK") {
			break
		}
	}
	if !has(got, "n OK") || !has(got, "* 1 EXISTS") || !has(got, "Hi Alice,") {
		t.Fatalf("compressed session: %q", got)
	}
	io.WriteString(zw, "y COMPRESS DEFLATE\r\n")
	zw.Flush()
	if l, _ := zr.ReadString('\n'); !strings.HasPrefix(l, "y NO [COMPRESSIONACTIVE]") {
		t.Fatalf("second COMPRESS: %q", l)
	}
}
