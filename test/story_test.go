package test

import (
	"strings"
	"testing"
)

// TestStory is the one-server story: submission, IMAP, POP3 on one store.
func TestStory(t *testing.T) {
	s := startServer(t, "a.test", map[string]string{"alice@a.test": "alice-pw", "bob@a.test": "bob-pw"})
	out := python(t, "story.py", s.port("submission"), s.port("imap"), s.port("pop3"), "alice-pw", "bob-pw")
	for _, want := range []string{"imap ok", "pop3 ok", "expunge seen"} {
		if !strings.Contains(out, want) {
			t.Errorf("story output lacks %q:\n%s", want, out)
		}
	}
}
