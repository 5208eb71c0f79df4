package mailboxname

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		want error
	}{
		{"Work", nil},
		{"Work/Projects/2024", nil},
		{"INBOX/Receipts", nil},
		{"Café ✓", nil},
		{"with space", nil},
		{strings.Repeat("a", MaxBytes), nil},
		{strings.Repeat("a/", MaxDepth-1) + "a", nil},
		{"", ErrEmpty},
		{strings.Repeat("a", MaxBytes+1), ErrTooLong},
		{"bad\xff", ErrNotUTF8},
		{strings.Repeat("a/", MaxDepth) + "a", ErrTooDeep},
		{"tab\there", ErrBadChar},
		{"del\x7f", ErrBadChar},
		{"c1\u0085", ErrBadChar},
		{"star*", ErrBadChar},
		{"per%cent", ErrBadChar},
		{"/top", ErrEmptyLevel},
		{"trailing/", ErrEmptyLevel},
		{"a//b", ErrEmptyLevel},
	}
	for _, c := range cases {
		if err := Check(c.name); !errors.Is(err, c.want) {
			t.Errorf("Check(%q) = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"inbox": "INBOX", "Inbox/a": "INBOX/a", "INBOX": "INBOX", "inboxes": "inboxes", "in": "in", "Work/inbox": "Work/inbox",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParentWithin(t *testing.T) {
	if p := Parent("a/b/c"); p != "a/b" {
		t.Errorf("Parent = %q", p)
	}
	if p := Parent("a"); p != "" {
		t.Errorf("Parent of a top level = %q", p)
	}
	for _, c := range []struct {
		name, anc string
		want      bool
	}{{"a", "a", true}, {"a/b", "a", true}, {"ab", "a", false}, {"b/a", "a", false}} {
		if got := Within(c.name, c.anc); got != c.want {
			t.Errorf("Within(%q, %q) = %v", c.name, c.anc, got)
		}
	}
}

// FuzzCheck holds Check to what the stores need of a name (no empty
// level, valid UTF-8, no CR, LF or NUL) and Canonical to a fixed point.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"INBOX", "inbox/a", "Work/Projects", "a//b", "/", "x\x00", "é/ü", strings.Repeat("a/", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c := Canonical(name)
		if Canonical(c) != c || !strings.EqualFold(c, name) {
			t.Fatalf("Canonical(%q) = %q", name, c)
		}
		if Check(name) != nil {
			return
		}
		if strings.ContainsAny(name, "\x00\r\n*%") || strings.HasPrefix(name, Sep) || strings.HasSuffix(name, Sep) ||
			strings.Contains(name, Sep+Sep) || len(name) > MaxBytes {
			t.Fatalf("Check accepted %q", name)
		}
		if p := Parent(name); p != "" && (Check(p) != nil || !Within(name, p)) {
			t.Fatalf("parent %q of %q", p, name)
		}
	})
}
