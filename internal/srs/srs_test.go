package srs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTest(t *testing.T, now *time.Time) *Rewriter {
	t.Helper()
	r, err := New(Config{Key: []byte("0123456789abcdef0123456789abcdef"), Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestForwardReverse(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	r := newTest(t, &now)
	for _, sender := range []string{
		"carol@c.test",
		"a=b@c.test",                       // "=" in the local part
		"x+tag@sub.c.test",                 // tag and subdomain
		"SRS0=abcdef=AB=o.test=u@fwd.test", // another forwarder's SRS0
	} {
		got, err := r.Forward(sender, "b.test")
		if err != nil {
			t.Fatalf("Forward(%q): %v", sender, err)
		}
		local, dom, _ := strings.Cut(got, "@")
		if dom != "b.test" || !IsSRS(local) {
			t.Errorf("Forward(%q) = %q, want SRS0=…@b.test", sender, got)
		}
		at := strings.LastIndexByte(got, '@')
		for _, l := range []string{got[:at], strings.ToLower(got[:at]), strings.ToUpper(got[:at])} {
			orig, err := r.Reverse(l)
			// Case changes in transit still verify; the original comes
			// back in the case it arrived in.
			if err != nil || !strings.EqualFold(orig, sender) {
				t.Errorf("Reverse(%q) = %q, %v; want %q", l, orig, err, sender)
			}
		}
	}
	got, _ := r.Forward("carol@c.test", "b.test")
	if want := "SRS0="; !strings.HasPrefix(got, want) || len(strings.Split(got, "=")[1]) != hashLen || len(strings.Split(got, "=")[2]) != 2 {
		t.Errorf("Forward = %q, want SRS0=HHHHHH=TT=…", got)
	}
}

func TestReverseRefuses(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	r := newTest(t, &now)
	good, _ := r.Forward("carol@c.test", "b.test")
	local := good[:strings.LastIndexByte(good, '@')]
	parts := strings.SplitN(local, "=", 5) // SRS0 hash ts domain local
	other, _ := New(Config{Key: []byte("another key, 16 bytes or more")})
	forged, _ := other.Forward("carol@c.test", "b.test")
	cases := []struct {
		name, local string
		want        error
	}{
		{"not SRS", "carol", ErrInvalid},
		{"prefix only", "SRS0=", ErrInvalid},
		{"too few fields", "SRS0=" + parts[1] + "=" + parts[2] + "=c.test", ErrInvalid},
		{"empty local", strings.Join(parts[:4], "=") + "=", ErrInvalid},
		{"other key", forged[:strings.LastIndexByte(forged, '@')], ErrInvalid},
		{"changed local", strings.Join(parts[:4], "=") + "=mallory", ErrInvalid},
		{"changed domain", strings.Join(parts[:3], "=") + "=evil.test=carol", ErrInvalid},
		{"changed stamp", strings.Join([]string{parts[0], parts[1], "AA", parts[3], parts[4]}, "="), ErrInvalid},
		{"bad stamp characters", "SRS0=" + parts[1] + "=!!=c.test=carol", ErrInvalid},
	}
	for _, c := range cases {
		if _, err := r.Reverse(c.local); !errors.Is(err, c.want) {
			t.Errorf("%s: Reverse(%q) = %v, want %v", c.name, c.local, err, c.want)
		}
	}
}

func TestExpiry(t *testing.T) {
	issued := time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC)
	now := issued
	r := newTest(t, &now)
	addr, _ := r.Forward("carol@c.test", "b.test")
	local := addr[:strings.LastIndexByte(addr, '@')]
	cases := []struct {
		after time.Duration
		want  error
	}{
		{0, nil},
		{21 * 24 * time.Hour, nil},
		{22 * 24 * time.Hour, ErrExpired},
		{500 * 24 * time.Hour, ErrExpired},
		{1024 * 24 * time.Hour, nil},  // the stamp wraps: accepted, as in every SRS
		{-24 * time.Hour, ErrExpired}, // issued "tomorrow"
	}
	for _, c := range cases {
		now = issued.Add(c.after)
		if _, err := r.Reverse(local); !errors.Is(err, c.want) {
			t.Errorf("after %s: %v, want %v", c.after, err, c.want)
		}
	}
}

func TestForwardRefuses(t *testing.T) {
	now := time.Now()
	r := newTest(t, &now)
	for _, s := range []string{"", "carol", "@c.test", "carol@", strings.Repeat("a", 200) + "@" + strings.Repeat("c", 40) + ".test"} {
		if got, err := r.Forward(s, "b.test"); err == nil {
			t.Errorf("Forward(%q) = %q, want an error", s, got)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(Config{Key: []byte("short")}); err == nil {
		t.Error("short key accepted")
	}
	if _, err := New(Config{Key: make([]byte, 32), MaxAge: 2000 * 24 * time.Hour}); err == nil {
		t.Error("max age beyond the stamp's range accepted")
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "srs.key")
	k1, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadKey(path)
	if err != nil || string(k1) != string(k2) || len(k1) != 32 {
		t.Errorf("second load: %x, %v; want the same 32-byte key %x", k2, err, k1)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in the directory, want only the key", len(entries))
	}
	if err := os.WriteFile(path, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path); err == nil {
		t.Error("a damaged key file was accepted (or replaced)")
	}
}
