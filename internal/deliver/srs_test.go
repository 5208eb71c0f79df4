package deliver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/srs"
)

// withSRS is the fixture with a Deliverer that rewrites forwarded mail,
// its clock at *now.
func withSRS(t *testing.T, relay bool, now *time.Time) (*fixture, *srs.Rewriter) {
	t.Helper()
	f := setup(t, relay)
	rw, err := srs.New(srs.Config{Key: []byte("a test key of enough bytes"), Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	f.d = deliver.New(f.st, deliver.Config{MaxMessageBytes: 1 << 20, Relay: relay, SRS: rw},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := f.m.AddAlias(context.Background(), "fwd@example.com", []string{"alice@example.com", "far@remote.example"}, false); err != nil {
		t.Fatal(err)
	}
	return f, rw
}

// TestForwardRewritesSender: the queued copy of forwarded mail carries
// an SRS0 sender in the alias's domain, unless the sender is null or
// ours; the local copy is not concerned.
func TestForwardRewritesSender(t *testing.T) {
	now := time.Now()
	f, rw := withSRS(t, true, &now)
	ctx := context.Background()
	cases := []struct {
		from    string
		rewrite bool
	}{
		{"Carol@Foreign.example", true},
		{"", false},
		{"bob@example.com", false},
		{"bob+tag@EXAMPLE.com", false},
	}
	for _, c := range cases {
		rc, err := f.d.Resolve(ctx, "fwd@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.d.Deliver(ctx, &deliver.Message{From: c.from, Recipients: []deliver.Recipient{rc},
			Body: strings.NewReader("Subject: fwd\r\n\r\nhi\r\n")}); err != nil {
			t.Fatal(err)
		}
		q, err := f.st.ListQueue(ctx)
		if err != nil || len(q) == 0 {
			t.Fatalf("queue: %v, %v", q, err)
		}
		got := q[len(q)-1].From
		if !c.rewrite {
			if got != c.from {
				t.Errorf("From %q queued as %q, want unchanged", c.from, got)
			}
			continue
		}
		local, dom, _ := strings.Cut(got, "@")
		if dom != "example.com" || !srs.IsSRS(local) {
			t.Errorf("From %q queued as %q, want SRS0=…@example.com", c.from, got)
			continue
		}
		if orig, err := rw.Reverse(local); err != nil || orig != c.from {
			t.Errorf("%q reverses to %q, %v; want %q", got, orig, err, c.from)
		}
	}
}

// TestResolveSRS: a bounce to a valid SRS0 address of ours goes to the
// original sender as a remote recipient; a forged, expired or foreign
// one does not.
func TestResolveSRS(t *testing.T) {
	issued := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	now := issued
	f, rw := withSRS(t, true, &now)
	ctx := context.Background()
	addr, err := rw.Forward("Carol@foreign.example", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	local := addr[:strings.IndexByte(addr, '@')]
	long, err := rw.Forward(strings.Repeat("c", 60)+"@foreign.example", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, addr string
		after      time.Duration
		want       string // remote target
		err        error
	}{
		{"valid", addr, 0, "carol@foreign.example", nil},
		{"case changed", strings.ToLower(local) + "@EXAMPLE.COM", 0, "carol@foreign.example", nil},
		{"local part over 64 octets", long, 0, strings.Repeat("c", 60) + "@foreign.example", nil},
		{"three weeks old", addr, 21 * 24 * time.Hour, "carol@foreign.example", nil},
		{"expired", addr, 22 * 24 * time.Hour, "", deliver.ErrUnknownUser},
		{"forged hash", "SRS0=AAAAAA=" + strings.SplitN(local, "=", 3)[2] + "@example.com", 0, "", deliver.ErrUnknownUser},
		{"changed sender", local + "x@example.com", 0, "", deliver.ErrUnknownUser},
		{"not SRS0 enough", "SRS0=x@example.com", 0, "", deliver.ErrUnknownUser},
		{"someone else's domain", local + "@elsewhere.example", 0, "", deliver.ErrNotLocal},
	}
	for _, c := range cases {
		now = issued.Add(c.after)
		rc, err := f.d.Resolve(ctx, c.addr)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: Resolve(%q) error = %v, want %v", c.name, c.addr, err, c.err)
			continue
		}
		if c.err == nil && (len(rc.Remote) != 1 || rc.Remote[0] != c.want || len(rc.Accounts) != 0) {
			t.Errorf("%s: Resolve(%q) = %+v, want remote %s", c.name, c.addr, rc, c.want)
		}
	}

	// The bounce itself: null sender, queued for the original sender.
	now = issued
	rc, err := f.d.Resolve(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.d.Deliver(ctx, &deliver.Message{Recipients: []deliver.Recipient{rc},
		Body: strings.NewReader("Subject: Undeliverable\r\n\r\nsorry\r\n")}); err != nil {
		t.Fatal(err)
	}
	q, err := f.st.ListQueue(ctx)
	if err != nil || len(q) != 1 || q[0].From != "" || q[0].Recipients[0].Address != "carol@foreign.example" {
		t.Fatalf("queue = %+v, %v; want the bounce to carol@foreign.example from <>", q, err)
	}

	// Relaying off: the original sender cannot be reached now.
	g, _ := withSRS(t, false, &now)
	if _, err := g.d.Resolve(ctx, addr); !errors.Is(err, deliver.ErrRelayUnavailable) {
		t.Errorf("relay off: %v, want ErrRelayUnavailable", err)
	}
}
