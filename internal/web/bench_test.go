package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/deliver"
)

// BenchmarkMailboxPage renders list pages of a 5,000-message INBOX
// through the handler, without the network: the first, a middle and the
// last page newest first, and a search, which still reads every message.
// A 500-message INBOX beside it shows what still grows with the mailbox.
func BenchmarkMailboxPage(b *testing.B) {
	for _, n := range []int{500, 5000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchmarkMailboxPage(b, n) })
	}
}

func benchmarkMailboxPage(b *testing.B, n int) {
	e := newEnv(b, envOpts{})
	e.fill(alice, n)
	sess := e.srv.sessions.create(e.alice.ID)
	base := fmt.Sprintf("/mailbox/%d", e.mailbox(e.alice, "INBOX").ID)
	for _, bc := range []struct{ name, query string }{
		{"first", ""},
		{"middle", fmt.Sprintf("?page=%d", n/pageSize/2)},
		{"last", fmt.Sprintf("?page=%d", n/pageSize)},
		{"search", "?q=subject"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", base+bc.query, nil)
				req.AddCookie(&http.Cookie{Name: cookieName, Value: sess.id})
				rec := httptest.NewRecorder()
				e.srv.Handler().ServeHTTP(rec, req)
				if rows := strings.Count(rec.Body.String(), `name="uid"`); rec.Code != http.StatusOK || rows != pageSize {
					b.Fatalf("%s: %d, %d rows", bc.query, rec.Code, rows)
				}
			}
		})
	}
}

// fill delivers n small messages to an account's INBOX, numbered from 0
// in their subjects, one delivery each.
func (e *env) fill(to string, n int) {
	e.t.Helper()
	ctx := context.Background()
	rc, err := e.del.Resolve(ctx, to)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range n {
		raw := fmt.Sprintf("From: Sender %d <s%d@other.test>\r\nTo: %s\r\nSubject: subject %04d\r\n\r\nbody %d\r\n", i, i, to, i, i)
		err := e.del.Deliver(ctx, &deliver.Message{From: "sender@other.test", Recipients: []deliver.Recipient{rc}, Body: strings.NewReader(raw)})
		if err != nil {
			e.t.Fatal(err)
		}
	}
}
