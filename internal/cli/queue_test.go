package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

func TestQueueCommands(t *testing.T) {
	dir := t.TempDir()
	// The default configuration keeps data in ./tern-data.
	st, err := sqlite.Open(filepath.Join(dir, "tern-data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b, err := st.Spool(ctx, strings.NewReader("Subject: x\r\n\r\nx\r\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Deliver(ctx, &store.Delivery{Blob: b, From: "a@here.example",
		Remote: []store.QueueRecipient{{Address: "x@one.example"}, {Address: "y@two.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"queue", "list"}, 0, "x@one.example"},
		{[]string{"queue", "list"}, 0, "2 queued"},
		{[]string{"queue", "show", "1"}, 0, "queued"},
		{[]string{"queue", "show", "1"}, 0, "a@here.example"},
		{[]string{"queue", "retry", "1"}, 0, "due now"},
		{[]string{"queue", "flush"}, 0, "2 queue entries due now"},
		{[]string{"queue", "remove", "2"}, 0, "removed"},
		{[]string{"queue", "remove", "2"}, 1, "no queue entry 2"},
		{[]string{"queue", "show", "2"}, 0, "no longer queued"},
		{[]string{"queue", "show", "99"}, 1, "no queue entry 99"},
		{[]string{"queue", "show", "x"}, 2, "not a queue entry ID"},
		{[]string{"queue", "list"}, 0, "1 queued"},
		{[]string{"check"}, 0, "store OK"},
		{[]string{"queue", "bogus"}, 2, "unknown subcommand"},
	}
	for _, s := range steps {
		code, out, errOut := run(t, dir, "", s.args...)
		text := out
		if s.code != 0 {
			text = errOut
		}
		if code != s.code || !strings.Contains(text, s.want) {
			t.Errorf("tern %s: exit %d, want %d; output %q lacks %q (stderr %q)", strings.Join(s.args, " "), code, s.code, text, s.want, errOut)
		}
	}
}
