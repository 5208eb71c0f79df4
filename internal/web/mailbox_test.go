package web

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var rowRE = regexp.MustCompile(`data-uid="(\d+)"`)

// rowUIDs returns the UIDs a list page shows, in order.
func rowUIDs(page string) []uint32 {
	var out []uint32
	for _, m := range rowRE.FindAllStringSubmatch(page, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 32)
		out = append(out, uint32(n))
	}
	return out
}

// TestListPages checks that each page of a 120-message INBOX shows
// exactly its messages, newest (last arrived) first, also with gaps in
// the UIDs, and that a message moved in counts as newly arrived.
func TestListPages(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	e.fill(alice, 130)
	inbox := e.mailbox(e.alice, "INBOX")
	all := e.messages(e.alice, "INBOX")
	// Gaps: every 13th message leaves, 10 of them, for 120.
	var gone []uint32
	for i := 0; i < len(all); i += 13 {
		gone = append(gone, all[i].UID)
	}
	if _, err := e.st.Expunge(ctx, inbox.ID, gone); err != nil {
		t.Fatal(err)
	}
	ms := e.messages(e.alice, "INBOX")
	if len(ms) != 120 {
		t.Fatalf("%d messages", len(ms))
	}
	var newest []uint32
	for i := len(ms) - 1; i >= 0; i-- {
		newest = append(newest, ms[i].UID)
	}
	oldest := slices.Clone(newest)
	slices.Reverse(oldest)

	a := e.login(alice)
	base := "/mailbox/" + strconv.FormatInt(inbox.ID, 10)
	for _, c := range []struct {
		query string
		want  []uint32
		page  string
	}{
		{"", newest[:50], "Page 1 of 3"},
		{"?page=2", newest[50:100], "Page 2 of 3"},
		{"?page=3", newest[100:], "Page 3 of 3"},
		{"?page=99", newest[100:], "Page 3 of 3"},
		{"?page=-1", newest[:50], "Page 1 of 3"},
		{"?sort=date-asc", oldest[:50], "Page 1 of 3"},
		{"?sort=date-asc&page=2", oldest[50:100], "Page 2 of 3"},
		{"?sort=date-asc&page=3", oldest[100:], "Page 3 of 3"},
	} {
		res, page := a.get(base + c.query)
		if got := rowUIDs(page); res.StatusCode != 200 || !slices.Equal(got, c.want) {
			t.Errorf("%s: %s, UIDs\n got %v\nwant %v", c.query, res.Status, got, c.want)
		}
		if !strings.Contains(page, c.page) || !strings.Contains(page, "120 messages") {
			t.Errorf("%s: pager or count wrong", c.query)
		}
	}
	_, p2 := a.get(base + "?page=2")
	if !strings.Contains(p2, `href="`+base+`" rel="prev"`) || !strings.Contains(p2, `href="`+base+`?page=3" rel="next"`) {
		t.Errorf("page 2 links wrong")
	}
	// The subjects match the UIDs: the newest message is the last sent.
	if _, p1 := a.get(base); !strings.Contains(p1, ">subject 0129</a>") {
		t.Errorf("page 1 does not start with the last message")
	}

	// A message moved in is the newest, whatever its date: the oldest
	// goes to Archive and back.
	arch := e.mailbox(e.alice, "Archive")
	if _, _, err := e.st.Move(ctx, inbox.ID, []uint32{ms[0].UID}, arch.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.Move(ctx, arch.ID, []uint32{1}, inbox.ID); err != nil {
		t.Fatal(err)
	}
	_, p1 := a.get(base)
	if got := rowUIDs(p1); len(got) != 50 || got[1] != newest[0] || !strings.Contains(p1, ">subject 0001</a>") {
		t.Errorf("a moved-in message is not first: %v", got)
	}
}
