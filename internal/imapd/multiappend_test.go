package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func literal(s string, sync bool) string {
	if sync {
		return fmt.Sprintf("{%d}", len(s))
	}
	return fmt.Sprintf("{%d+}", len(s))
}

// TestMultiAppend: RFC 3502 with synchronising and non-synchronising
// literals, flags and dates per message; the UIDs come back as one set.
func TestMultiAppend(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	c := e.login()
	if caps := c.cmd("c CAPABILITY"); !has(caps, " MULTIAPPEND") {
		t.Fatalf("MULTIAPPEND not advertised: %q", caps)
	}
	m1, m2, m3 := "Subject: one\r\n\r\n1\r\n", "Subject: two\r\n\r\n2\r\n", "Subject: three\r\n\r\n3\r\n"
	c.Send(`m APPEND INBOX (\Seen) ` + literal(m1, true))
	c.Expect("+ ")
	c.Send(m1 + ` (\Flagged) "01-Jan-2024 10:00:00 +0000" ` + literal(m2, false))
	c.Send(m2 + " " + literal(m3, true))
	c.Expect("+ ")
	c.Send(m3)
	_, st := c.until("m")
	want := fmt.Sprintf("OK [APPENDUID %d 1:3]", e.mailbox("INBOX").UIDValidity)
	if !strings.HasPrefix(st, want) {
		t.Fatalf("MULTIAPPEND: %q, want %q", st, want)
	}
	ms := e.metas("INBOX")
	if len(ms) != 3 || !hasFlag(ms[0].Flags, `\Seen`) || !hasFlag(ms[1].Flags, `\Flagged`) || len(ms[2].Flags) != 0 {
		t.Fatalf("stored: %+v", ms)
	}
	c.cmd("s SELECT INBOX")
	out := c.cmd("f UID FETCH 1:3 (INTERNALDATE BODY.PEEK[HEADER.FIELDS (Subject)])")
	if len(out) != 3 || !strings.Contains(out[0], "Subject: one") || !strings.Contains(out[1], `"01-Jan-2024 10:00:00 +0000"`) ||
		!strings.Contains(out[2], "Subject: three") {
		t.Fatalf("FETCH: %q", out)
	}
}

// TestMultiAppendAllOrNothing: a message refused mid-way fails the whole
// command and nothing is appended; the session stays in step.
func TestMultiAppendAllOrNothing(t *testing.T) {
	e := newEnv(t, envOpts{plain: true, cfg: Config{MaxLiteralBytes: 1000}})
	c := e.login()
	msg := "Subject: x\r\n\r\n" + strings.Repeat("y", 100) + "\r\n"
	empty := func(what string) {
		t.Helper()
		if ms := e.metas("INBOX"); len(ms) != 0 {
			t.Fatalf("%s: %d messages appended", what, len(ms))
		}
	}

	// The second literal is past APPENDLIMIT: refused before "+".
	c.Send("a APPEND INBOX " + literal(msg, false))
	c.Send(msg + " {2000}")
	if _, st := c.until("a"); !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Fatalf("second literal too big: %q", st)
	}
	empty("too big")
	c.cmd("n NOOP")

	// The third message takes the account past its quota.
	if err := e.st.SetQuota(context.Background(), e.acct.ID, int64(2*len(msg)+10)); err != nil {
		t.Fatal(err)
	}
	c.Send("b APPEND INBOX " + literal(msg, false))
	c.Send(msg + " " + literal(msg, false))
	c.Send(msg + " " + literal(msg, false))
	c.Send(msg)
	if _, st := c.until("b"); !strings.HasPrefix(st, "NO [OVERQUOTA]") {
		t.Fatalf("over quota in total: %q", st)
	}
	empty("over quota")
	if err := e.st.SetQuota(context.Background(), e.acct.ID, 0); err != nil {
		t.Fatal(err)
	}

	// The mailbox disappears while the messages are sent.
	if _, err := e.st.CreateMailbox(context.Background(), e.acct.ID, "Gone", ""); err != nil {
		t.Fatal(err)
	}
	c.Send("g APPEND Gone " + literal(msg, true))
	c.Expect("+ ")
	if err := e.st.DeleteMailbox(context.Background(), e.acct.ID, "Gone"); err != nil {
		t.Fatal(err)
	}
	c.Send(msg + " " + literal(msg, false))
	c.Send(msg)
	if _, st := c.until("g"); !strings.HasPrefix(st, "NO [TRYCREATE]") {
		t.Fatalf("mailbox deleted mid-way: %q", st)
	}

	// More messages than one APPEND may carry.
	var b strings.Builder
	b.WriteString("l APPEND INBOX")
	for range maxAppendMessages + 1 {
		b.WriteString(" " + literal("x", false) + "\r\nx")
	}
	c.Send(b.String())
	if _, st := c.until("l"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Fatalf("too many messages: %q", st)
	}
	empty("too many")
	c.cmd("z NOOP")
}
