package deliver_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
)

// TestAppendAll: the quota is enforced for the group's total, a refused
// group leaves nothing, a good one gets consecutive UIDs in order.
func TestAppendAll(t *testing.T) {
	f := setup(t, false)
	ctx := context.Background()
	alice := f.ids["alice@example.com"]
	items := func(bodies ...string) []deliver.AppendItem {
		var out []deliver.AppendItem
		for _, b := range bodies {
			sp, err := f.d.Spool(ctx, strings.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, deliver.AppendItem{Flags: []string{store.FlagSeen}, Body: sp})
		}
		return out
	}
	msg := "Subject: s\r\n\r\n" + strings.Repeat("x", 50) + "\r\n"
	if err := f.st.SetQuota(ctx, alice, int64(2*len(msg)+10)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.AppendAll(ctx, alice, "Sent", items(msg, msg, msg)); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("over quota in total: %v", err)
	}
	if _, err := f.d.AppendAll(ctx, alice, "NoSuch", items(msg)); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Fatalf("missing mailbox: %v", err)
	}
	mb, err := f.st.GetMailbox(ctx, alice, "Sent")
	if err != nil {
		t.Fatal(err)
	}
	if ms, _ := f.st.ListMessages(ctx, mb.ID); len(ms) != 0 {
		t.Fatalf("refused groups left %d messages", len(ms))
	}
	got, err := f.d.AppendAll(ctx, alice, "Sent", items(msg, msg))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		if d.UID != uint32(i+1) || d.UIDValidity != mb.UIDValidity {
			t.Errorf("message %d: %+v", i, d)
		}
	}
	if _, err := f.d.Spool(ctx, strings.NewReader(strings.Repeat("y", 2<<20))); !errors.Is(err, store.ErrTooBig) {
		t.Fatalf("too big: %v", err)
	}
}
