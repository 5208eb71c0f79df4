package imapd

import (
	"fmt"
	"strings"
	"testing"
)

func TestBaseSubject(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		reply    bool
	}{
		{"Hello", "HELLO", false},
		{"Re: Hello", "HELLO", true},
		{"RE: re:  Fwd: Hello (fwd)", "HELLO", true},
		{"[list] Re: Hello", "HELLO", true},
		{"[Fwd: Re: Hello]", "HELLO", true},
		{"Re[2]: Hello  there ", "HELLO THERE", true},
		{"[just brackets]", "[JUST BRACKETS]", false},
		{"", "", false},
	} {
		got, reply := baseSubject(tc.in)
		if got != tc.want || reply != tc.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", tc.in, got, reply, tc.want, tc.reply)
		}
	}
}

func threadMsg(id, refs, subject string, day int) string {
	h := fmt.Sprintf("From: u%d@example.org\r\nSubject: %s\r\nDate: %d Jan 2024 10:00:00 +0000\r\nMessage-ID: %s\r\n", day, subject, day, id)
	if refs != "" {
		h += "References: " + refs + "\r\n"
	}
	return h + "\r\nbody\r\n"
}

func TestSortAndThread(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	e.put("INBOX", threadMsg("<a@x>", "", "Plan", 1))                 // 1
	e.put("INBOX", threadMsg("<b@x>", "<a@x>", "Re: Plan", 3))        // 2
	e.put("INBOX", threadMsg("<c@x>", "", "Other", 2))                // 3
	e.put("INBOX", threadMsg("<d@x>", "<a@x> <b@x>", "Re: Plan", 4))  // 4
	e.put("INBOX", threadMsg("<e@x>", "<a@x>", "Re: Plan", 5))        // 5
	e.put("INBOX", threadMsg("<f@x>", "<missing@x>", "Re: Other", 6)) // 6
	c := e.login()
	c.cmd("s SELECT INBOX")
	if out := c.cmd("a SORT (SUBJECT REVERSE DATE) UTF-8 ALL"); !has(out, "* SORT 6 3 5 4 2 1") {
		t.Errorf("SORT: %q", out)
	}
	if out := c.cmd("b UID SORT (REVERSE ARRIVAL) US-ASCII NOT 1"); !has(out, "* SORT 6 5 4 3 2") {
		t.Errorf("UID SORT: %q", out)
	}
	if out := c.cmd("c SORT (FROM SIZE) UTF-8 ALL"); !has(out, "* SORT 1 3 2 4 5 6") {
		t.Errorf("SORT FROM: %q", out)
	}
	if out := c.cmd("d THREAD ORDEREDSUBJECT UTF-8 ALL"); !has(out, "* THREAD (1 (2)(4)(5))(3 6)") {
		t.Errorf("ORDEREDSUBJECT: %q", out)
	}
	out := c.cmd("e THREAD REFERENCES UTF-8 ALL")
	if !has(out, "* THREAD (1 (2 4)(5))(3 6)") {
		t.Errorf("REFERENCES: %q", out)
	}
	if _, st := c.run("f THREAD BOGUS UTF-8 ALL"); !strings.HasPrefix(st, "BAD") {
		t.Errorf("bad algorithm: %q", st)
	}
}
