package imapd

import (
	"net"
	"strings"
	"testing"
	"time"
)

const testMsg = "From: Bob <bob@example.org>\r\n" +
	"To: Alice <alice@example.test>\r\n" +
	"Subject: Hello there\r\n" +
	"Date: Mon, 2 Jan 2006 15:04:05 -0700\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hi Alice,\r\nthe body text.\r\n"

func has(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func TestGreetingAndLoginDisabled(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	c := e.dial()
	caps := c.cmd("a CAPABILITY")
	if !has(caps, "LOGINDISABLED") || !has(caps, "STARTTLS") || has(caps, "AUTH=PLAIN") {
		t.Fatalf("pre-TLS capabilities: %q", caps)
	}
	_, st := c.run("b LOGIN " + testUser + ` "` + testPass + `"`)
	if !strings.HasPrefix(st, "NO [PRIVACYREQUIRED]") {
		t.Fatalf("LOGIN before TLS: %q", st)
	}
	_, st = c.run("c SELECT INBOX")
	if !strings.HasPrefix(st, "BAD") {
		t.Fatalf("SELECT before login: %q", st)
	}
	c.cmd("d LOGOUT")
}

func TestLoginSelectFetch(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	uid := e.put("INBOX", testMsg)
	c := e.login()
	sel := c.cmd("s SELECT INBOX")
	for _, want := range []string{"* 1 EXISTS", "UIDVALIDITY", "UIDNEXT", "PERMANENTFLAGS", "HIGHESTMODSEQ"} {
		if !has(sel, want) {
			t.Errorf("SELECT lacks %q: %q", want, sel)
		}
	}
	out := c.cmd("f FETCH 1 (UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])")
	if len(out) != 1 {
		t.Fatalf("FETCH: %q", out)
	}
	for _, want := range []string{"UID " + uitoa(uid), "FLAGS ()", `"Hello there"`, `(("Bob" NIL "bob" "example.org"))`,
		"BODY[HEADER.FIELDS (Subject)] {24}\r\nSubject: Hello there\r\n\r\n"} {
		if !strings.Contains(out[0], want) {
			t.Errorf("FETCH lacks %q: %q", want, out[0])
		}
	}
	out = c.cmd("g FETCH 1 (BODY[TEXT] BODYSTRUCTURE)")
	if !strings.Contains(out[0], "Hi Alice,") || !strings.Contains(out[0], `BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" 27 2`) {
		t.Fatalf("FETCH body: %q", out)
	}
	if !strings.Contains(out[0], `FLAGS (\Seen)`) {
		t.Errorf("non-PEEK fetch did not report \\Seen: %q", out)
	}
	out = c.cmd("h FETCH 1 BODY[]<0.4>")
	if !strings.Contains(out[0], "BODY[]<0> {4}\r\nFrom") {
		t.Errorf("partial: %q", out)
	}
	c.cmd("z LOGOUT")
}

func TestLiterals(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	c := e.dial()
	// Synchronising literal: the server asks for it.
	c.Send("a LOGIN {" + uitoa(uint32(len(testUser))) + "}")
	c.Expect("+ ")
	c.Send(testUser + " {" + uitoa(uint32(len(testPass))) + "+}")
	c.Send(testPass)
	if _, st := c.until("a"); !strings.HasPrefix(st, "OK") {
		t.Fatalf("LOGIN with literals: %q", st)
	}
	// A failed command with a non-synchronising literal is skipped whole.
	c.Send("b CREATE {3+}")
	c.Send("a/b BOGUS")
	if _, st := c.until("b"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("bad CREATE: %q", st)
	}
	c.cmd("c NOOP")
	// APPEND over the limit is refused before "+".
	_, st := c.run("d APPEND INBOX {999999999999}")
	if !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Fatalf("oversized APPEND: %q", st)
	}
	c.cmd("e NOOP")
	msg := "Subject: x\r\n\r\nbody\r\n"
	c.Send("f APPEND INBOX (\\Seen) {" + uitoa(uint32(len(msg))) + "}")
	c.Expect("+ ")
	c.Send(msg)
	_, st = c.until("f")
	if !strings.HasPrefix(st, "OK [APPENDUID ") {
		t.Fatalf("APPEND: %q", st)
	}
	ms := e.metas("INBOX")
	if len(ms) != 1 || !hasFlag(ms[0].Flags, `\Seen`) {
		t.Fatalf("stored: %+v", ms)
	}
	// APPEND to a missing mailbox.
	_, st = c.run("g APPEND Nope {5}")
	if !strings.HasPrefix(st, "NO [TRYCREATE]") {
		t.Fatalf("APPEND to missing mailbox: %q", st)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	c := e.dial()
	c.Send("a NOOP " + strings.Repeat("x", 70<<10))
	c.Expect("* BAD")
	c.Expect("* BYE")

	c = e.dial()
	for i := 0; i < maxBadCommands-1; i++ {
		if _, st := c.run("x BOGUS"); !strings.HasPrefix(st, "BAD") {
			t.Fatal(st)
		}
	}
	c.Send("x BOGUS")
	c.Expect("x BAD")
	c.Expect("* BYE")

	c = e.login()
	c.cmd("s SELECT INBOX")
	_, st := c.run("n SEARCH " + strings.Repeat("(", 40) + "ALL" + strings.Repeat(")", 40))
	if !strings.HasPrefix(st, "BAD") {
		t.Fatalf("deep nesting: %q", st)
	}
	// Sequence numbers beyond the mailbox.
	if _, st := c.run("f FETCH 5 FLAGS"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("FETCH beyond: %q", st)
	}
}

func TestSessionLimits(t *testing.T) {
	e := newEnv(t, envOpts{plain: true, cfg: Config{MaxConnsPerIP: 2, IdleTimeout: 300 * time.Millisecond, MaxLiteralBytes: 1000}})
	a, b := e.dial(), e.dial()
	c3, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	newClient(t, c3).Expect("* BYE [UNAVAILABLE]")
	// Autologout.
	a.Expect("* BYE Autologout")
	b.Expect("* BYE Autologout")

	c := e.login()
	c.cmd("s EXAMINE INBOX")
	if _, st := c.run(`a STORE 1:* +FLAGS (\Seen)`); !strings.HasPrefix(st, "BAD") && !strings.HasPrefix(st, "NO") {
		t.Fatalf("STORE in EXAMINE: %q", st)
	}
	// A non-synchronising literal past APPENDLIMIT closes the session.
	c.Send("t APPEND INBOX {2000+}")
	c.Expect("t NO [TOOBIG]")
	c.Expect("* BYE")
}

func TestFailedCommandSkipsLiteralPlus(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	c := e.login()
	// The first name is refused (NO) before the second, a non-synchronising
	// literal, is parsed: it must not be taken for a command.
	c.Send("r RENAME a//b {11+}")
	c.Send("x LOGOUT yy")
	if _, st := c.until("r"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("RENAME: %q", st)
	}
	c.cmd("n NOOP")
}

// TestIdleSeesOtherSession: flag changes and expunges by another session
// reach an IDLE session at once, with correct sequence numbers.
func TestIdleSeesOtherSession(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	for range 3 {
		e.put("INBOX", testMsg)
	}
	a, b := e.login(), e.login()
	a.cmd("s SELECT INBOX")
	b.cmd("s SELECT INBOX")
	a.Send("i IDLE")
	a.Expect("+ ")
	b.cmd(`1 STORE 3 +FLAGS (\Flagged)`)
	a.Expect(`* 3 FETCH (UID 3 FLAGS (\Flagged))`)
	b.cmd(`2 STORE 1 +FLAGS.SILENT (\Deleted)`)
	a.Expect(`* 1 FETCH (UID 1 FLAGS (\Deleted))`)
	b.cmd("3 EXPUNGE")
	a.Expect("* 1 EXPUNGE")
	e.put("INBOX", testMsg)
	a.Expect("* 3 EXISTS")
	a.Send("DONE")
	a.Expect("i OK")
	if out := a.cmd("f FETCH 1:* (UID)"); !has(out, "* 1 FETCH (UID 2)") || !has(out, "* 3 FETCH (UID 4)") {
		t.Fatalf("after IDLE: %q", out)
	}
}
