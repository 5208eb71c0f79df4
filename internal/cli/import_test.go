package cli

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/config"
	"github.com/ternmail/tern/internal/daemon"
	"github.com/ternmail/tern/internal/store"
)

func TestMboxReader(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"empty", "", nil},
		{"blank lines only", "\n\n", nil},
		{"one", "From a Thu Nov 26 02:08:11 2026\nS: 1\n\nbody\n\n", []string{"S: 1\n\nbody\n"}},
		{"no final blank line", "From a\nS: 1\n\nbody\n", []string{"S: 1\n\nbody\n"}},
		{"no final newline", "From a\nS: 1\n\nbody", []string{"S: 1\n\nbody"}},
		{"two", "From a\nA\n\nFrom b\nB\n\n", []string{"A\n", "B\n"}},
		{"empty lines kept", "From a\nA\n\n\n\nFrom b\nB\n", []string{"A\n\n\n", "B\n"}},
		{"mboxrd unquoting", "From a\n\n>From x\n>>From y\n> From z\n>Fromage\n", []string{"\nFrom x\n>From y\n> From z\n>Fromage\n"}},
		{"CRLF", "From a\r\nA\r\n\r\nFrom b\r\nB\r\n\r\n", []string{"A\r\n", "B\r\n"}},
		{"leading blank line", "\nFrom a\nA\n", []string{"A\n"}},
		{"long line", "From a\n" + strings.Repeat("x", 100000) + "From \n", []string{strings.Repeat("x", 100000) + "From \n"}},
		{"empty message", "From a\nFrom b\nB\n", []string{"", "B\n"}},
	}
	for _, tt := range tests {
		got, err := readMbox(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	if _, err := newMboxReader(strings.NewReader("Subject: x\n\nbody\n")); err != errNotMbox {
		t.Errorf("not an mbox: %v", err)
	}
}

func readMbox(in string) ([]string, error) {
	mr, err := newMboxReader(strings.NewReader(in))
	if err != nil {
		return nil, err
	}
	var got []string
	for {
		msg, err := mr.next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		b, err := io.ReadAll(msg.Body)
		if err != nil {
			return got, err
		}
		got = append(got, string(b))
	}
}

func FuzzMboxReader(f *testing.F) {
	f.Add("From a\nA\n\n>From b\n\nFrom c\nC")
	f.Add("\r\nFrom a\r\n>>From b\r\n\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		msgs, err := readMbox(in)
		if err != nil {
			return
		}
		// Written again as mboxrd, the messages read back the same.
		var b strings.Builder
		for i, m := range msgs {
			b.WriteString("From x\n")
			for _, line := range strings.SplitAfter(m, "\n") {
				if isQuotedFrom([]byte(">" + line)) {
					b.WriteByte('>')
				}
				b.WriteString(line)
			}
			switch {
			case m == "" || strings.HasSuffix(m, "\n"):
				b.WriteString("\n")
			case i < len(msgs)-1:
				return // no line end before the next message: not writable
			}
		}
		again, err := readMbox(b.String())
		if err != nil || !slices.Equal(again, msgs) {
			t.Fatalf("%q read as %q, written as %q, read back as %q, %v", in, msgs, b.String(), again, err)
		}
	})
}

func TestCRLFReader(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"a\nb":           "a\r\nb",
		"a\r\nb\n\n":     "a\r\nb\r\n\r\n",
		"\n\r\n\r\r\n\n": "\r\n\r\n\r\r\n\r\n",
	} {
		got, err := io.ReadAll(newCRLFReader(strings.NewReader(in)))
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	// One byte at a time, as a reader may be asked.
	r := newCRLFReader(strings.NewReader("x\ny\n"))
	var got []byte
	p := make([]byte, 1)
	for {
		n, err := r.Read(p)
		got = append(got, p[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != "x\r\ny\r\n" {
		t.Errorf("byte by byte: %q", got)
	}
}

func TestFromLineDate(t *testing.T) {
	local := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.Local)
	}
	for line, want := range map[string]time.Time{
		"From alice@example.com Thu Nov 26 02:08:11 2026":        local(2026, 11, 26, 2, 8, 11),
		"From alice@example.com  Thu Nov  6 02:08:11 2026":       local(2026, 11, 6, 2, 8, 11),
		"From MAILER-DAEMON Thu Nov 26 02:08:11 2026 +0100":      time.Date(2026, 11, 26, 1, 8, 11, 0, time.UTC),
		"From \"a b\"@example.com Thu Nov 26 02:08:11 2026":      local(2026, 11, 26, 2, 8, 11),
		"From alice@example.com":                                 {},
		"From alice@example.com yesterday at noon, roughly said": {},
	} {
		if got := fromLineDate(line); !got.Equal(want) {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
}

func TestMaildirNames(t *testing.T) {
	for name, want := range map[string][]string{
		"1.2.host":            nil,
		"1.2.host:2,":         nil,
		"1.2.host:2,FRS":      {store.FlagFlagged, store.FlagAnswered, store.FlagSeen},
		"1.2.host,S=9:2,DPTa": {store.FlagDraft, store.FlagDeleted},
	} {
		got := flagsFromMaildirName(name)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if got := maildirInfo([]string{`\seen`, store.FlagDraft, "$Junk", store.FlagAnswered}); got != ":2,DRS" {
		t.Errorf("maildirInfo: %q", got)
	}
	for name, dir := range map[string]string{
		"Work":             ".Work",
		"Lists/Go":         ".Lists.Go",
		"v1.2/a\\b":        `.v1\2e2.a\5cb`,
		"Ünïcode/Sub/Deep": ".Ünïcode.Sub.Deep",
	} {
		if got := maildirFolder(name); got != dir {
			t.Errorf("maildirFolder(%q) = %q, want %q", name, got, dir)
		}
		if got, err := mailboxFromFolder(dir); got != name || err != nil {
			t.Errorf("mailboxFromFolder(%q) = %q, %v; want %q", dir, got, err, name)
		}
	}
	if _, err := mailboxFromFolder(".a..b"); err == nil {
		t.Error("empty name part accepted")
	}
}

// testMbox has a quoted From line, Status flags, a message too big for
// the configured limit and a last message without a final newline.
const testMbox = `From alice@example.com Thu Nov 26 02:08:11 2026
From: a@example.com
Subject: one
Status: RO
X-Status: AF

Hello
>From the start
>>From quoted twice
From_ is not a separator

From MAILER-DAEMON Fri Nov 27 10:00:00 2026
Subject: two
Status: O

body two

From big@example.com Fri Nov 27 11:00:00 2026
Subject: big

` + "BIG" + `

From z@example.com Sat Nov 28 10:00:00 2026
Subject: three
X-Status: D

no trailing newline`

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestImportExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mtime time.Time) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if !mtime.IsZero() {
			os.Chtimes(p, mtime, mtime)
		}
	}
	write("tern.toml", "[limits]\nmax_message_bytes = 4000\n", time.Time{})
	write("mail.mbox", strings.Replace(testMbox, "BIG", strings.Repeat("0123456789\n", 500), 1), time.Time{})
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	write("md/new/1000.a.host", "Subject: new\n\nnew mail\n", t0)
	write("md/cur/1001.b.host:2,S", "Subject: seen\n\nseen\n", t0.Add(time.Minute))
	write("md/cur/1002.c.host:2,DFRT", "Subject: all\n\nall\r\n", t0.Add(2*time.Minute))
	write("md/tmp/1003.d.host", "Subject: half written\n", t0)
	write("md/.Lists.Go/cur/1004.e.host:2,RS", "Subject: go\n\ngo\n", t0.Add(3*time.Minute))
	write("md/.Lists.Go/new/1005.f.host", "Subject: go2\n\ngo2\n", t0.Add(4*time.Minute))
	write("md/.Lists/cur/1006.g.host:2,S", "Subject: lists\n\nlists\n", t0.Add(5*time.Minute))
	write(`md/.v1\2e2/cur/1007.h.host:2,F`, "Subject: dotted\n\ndotted\n", t0.Add(6*time.Minute))
	os.MkdirAll(filepath.Join(dir, "md/.Work/cur"), 0o700)
	os.MkdirAll(filepath.Join(dir, "md/.Work/new"), 0o700)

	for _, args := range [][]string{
		{"domain", "add", "example.com"},
	} {
		if code, _, errOut := run(t, dir, "", args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	for _, u := range []string{"alice@example.com", "bob@example.com"} {
		if code, _, errOut := run(t, dir, "pw\n", "user", "add", "--password-stdin", u); code != 0 {
			t.Fatal(errOut)
		}
	}

	code, out, errOut := run(t, dir, "", "import", "mbox", "alice@example.com", "mail.mbox")
	if code != 1 || !strings.Contains(out, "imported 3 of 4 messages") ||
		!strings.Contains(errOut, "message 3 (at byte") || !strings.Contains(errOut, "larger than limits.max_message_bytes") ||
		!strings.Contains(errOut, "1 message(s) could not be imported") {
		t.Errorf("import mbox: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, dir, "", "import", "maildir", "alice@example.com", "md")
	if code != 0 || !strings.Contains(out, "imported 7 of 7 messages") || !strings.Contains(out, "created mailbox Lists/Go") {
		t.Errorf("import maildir: exit %d\n%s\n%s", code, out, errOut)
	}

	st := openTestStore(t, dir)
	alice := mailContents(t, st, "alice@example.com")
	st.Close()
	inbox := alice["INBOX"]
	want := []stored{
		{crlf("From: a@example.com\nSubject: one\nStatus: RO\nX-Status: AF\n\nHello\nFrom the start\n>From quoted twice\nFrom_ is not a separator\n"),
			[]string{store.FlagAnswered, store.FlagFlagged, store.FlagSeen}, time.Date(2026, 11, 26, 2, 8, 11, 0, time.Local)},
		{crlf("Subject: two\nStatus: O\n\nbody two\n"), nil, time.Date(2026, 11, 27, 10, 0, 0, 0, time.Local)},
		{crlf("Subject: three\nX-Status: D\n\nno trailing newline"), []string{store.FlagDeleted}, time.Date(2026, 11, 28, 10, 0, 0, 0, time.Local)},
		{crlf("Subject: new\n\nnew mail\n"), nil, t0},
		{crlf("Subject: seen\n\nseen\n"), []string{store.FlagSeen}, t0.Add(time.Minute)},
		{"Subject: all\r\n\r\nall\r\n", []string{store.FlagAnswered, store.FlagDeleted, store.FlagDraft, store.FlagFlagged}, t0.Add(2 * time.Minute)},
	}
	if len(inbox) != len(want) {
		t.Fatalf("alice's INBOX has %d messages, want %d: %+v", len(inbox), len(want), inbox)
	}
	for i, w := range want {
		if !inbox[i].equal(w) {
			t.Errorf("INBOX message %d:\n got %+v\nwant %+v", i+1, inbox[i], w)
		}
	}
	for name, n := range map[string]int{"Lists": 1, "Lists/Go": 2, "v1.2": 1, "Work": 0} {
		if mb, ok := alice[name]; !ok || len(mb) != n {
			t.Errorf("alice's %s: %d messages (exists %v), want %d", name, len(mb), ok, n)
		}
	}

	code, out, errOut = run(t, dir, "", "export", "alice@example.com", "out")
	if code != 0 || !strings.Contains(out, "exported 10 messages") {
		t.Fatalf("export: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, p := range []string{"out/cur", "out/.Lists.Go/cur", `out/.v1\2e2/maildirfolder`, "out/.Work/new"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	if code, _, errOut = run(t, dir, "", "export", "alice@example.com", "out"); code != 1 || !strings.Contains(errOut, "not empty") {
		t.Errorf("export into a non-empty directory: exit %d, %q", code, errOut)
	}

	code, out, errOut = run(t, dir, "", "import", "maildir", "bob@example.com", "out")
	if code != 0 || !strings.Contains(out, "imported 10 of 10 messages") {
		t.Fatalf("re-import: exit %d\n%s\n%s", code, out, errOut)
	}
	st = openTestStore(t, dir)
	defer st.Close()
	bob := mailContents(t, st, "bob@example.com")
	for name, msgs := range alice {
		got := bob[name]
		if len(got) != len(msgs) {
			t.Errorf("%s: bob has %d messages, alice %d", name, len(got), len(msgs))
			continue
		}
		// The export's order is by internal date, not by UID.
		byDate := slices.Clone(msgs)
		slices.SortStableFunc(byDate, func(a, b stored) int { return a.date.Compare(b.date) })
		for i := range got {
			if !got[i].equal(byDate[i]) {
				t.Errorf("%s message %d after the round trip:\n got %+v\nwant %+v", name, i+1, got[i], byDate[i])
			}
		}
	}
	if len(bob) != len(alice) {
		t.Errorf("bob has mailboxes %v, alice %v", keys(bob), keys(alice))
	}
}

type stored struct {
	body  string
	flags []string
	date  time.Time
}

func (s stored) equal(o stored) bool {
	return s.body == o.body && slices.Equal(s.flags, o.flags) && s.date.Equal(o.date)
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func openTestStore(t *testing.T, dir string) store.Store {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, "tern.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, cfg.DataDir)
	st, err := daemon.OpenStore(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// mailContents returns an account's messages by mailbox, in UID order,
// with sorted flags.
func mailContents(t *testing.T, st store.Store, address string) map[string][]stored {
	t.Helper()
	ctx := t.Context()
	a, err := st.GetAccount(ctx, address)
	if err != nil {
		t.Fatal(err)
	}
	mbs, err := st.ListMailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string][]stored{}
	for _, mb := range mbs {
		metas, err := st.ListMessages(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		var uids []uint32
		for _, m := range metas {
			uids = append(uids, m.UID)
		}
		msgs, err := st.GetMessages(ctx, mb.ID, uids)
		if err != nil {
			t.Fatal(err)
		}
		all[mb.Name] = []stored{}
		for _, m := range msgs {
			r, err := st.OpenBlob(ctx, m.BlobID)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			io.Copy(&b, io.NewSectionReader(r, 0, r.Size()))
			r.Close()
			flags := slices.Clone(m.Flags)
			slices.Sort(flags)
			if len(flags) == 0 {
				flags = nil
			}
			all[mb.Name] = append(all[mb.Name], stored{b.String(), flags, m.InternalDate})
		}
	}
	return all
}
