package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/nanotime"
)

// req makes a delivery request for deliverBatch as Deliver would, to one
// mailbox.
func req(s *Store, account int64, mailbox string, n int, enforce bool) *deliverReq {
	body := []byte(fmt.Sprintf("Subject: %d\r\n\r\nbatch body %d\r\n", n, n))
	sum := sha256.Sum256(body)
	return &deliverReq{
		ctx:     context.Background(),
		d:       &store.Delivery{Blob: &store.Blob{ID: hex.EncodeToString(sum[:]), Size: int64(len(body)), Data: body}, EnforceQuota: enforce},
		targets: []target{{account: account, mailbox: mailbox, date: nanotime.Encode(s.now())}},
		sha:     sum[:],
		body:    body,
	}
}

// TestDeliverBatch runs batches where deliveries fail in every position
// and in every way (refused by quota, a missing mailbox or account, an
// SQL error that aborts the transaction): each fails alone and the
// others commit together.
func TestDeliverBatch(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	a := setupAccount(t, s)
	full := setupAccount(t, s)
	if err := s.SetQuota(ctx, full, 1); err != nil {
		t.Fatal(err)
	}
	n := 0
	good := func() *deliverReq { n++; return req(s, a, "INBOX", n, true) }
	bad := []struct {
		name string
		make func() *deliverReq
		want error
	}{
		{"quota", func() *deliverReq { n++; return req(s, full, "INBOX", n, true) }, store.ErrQuota},
		{"mailbox", func() *deliverReq { n++; return req(s, a, "Missing", n, true) }, store.ErrNoSuchMailbox},
		{"account", func() *deliverReq { n++; return req(s, 1<<40, "INBOX", n, true) }, store.ErrNotFound},
		{"sql", func() *deliverReq { n++; return req(s, a, "bad\xff", n, true) }, nil},
	}
	want := 0
	for _, b := range bad {
		for _, shape := range []string{"first", "middle", "last", "only"} {
			var batch []*deliverReq
			var failing *deliverReq
			switch shape {
			case "first":
				failing = b.make()
				batch = []*deliverReq{failing, good(), good()}
			case "middle":
				failing = b.make()
				batch = []*deliverReq{good(), failing, good()}
			case "last":
				failing = b.make()
				batch = []*deliverReq{good(), good(), failing}
			case "only":
				failing = b.make()
				batch = []*deliverReq{failing}
			}
			if err := s.deliverBatch(ctx, batch); err != nil {
				t.Fatalf("%s %s: batch failed: %v", b.name, shape, err)
			}
			for _, r := range batch {
				switch {
				case r == failing && r.err == nil:
					t.Errorf("%s %s: failing delivery succeeded", b.name, shape)
				case r == failing && b.want != nil && !errors.Is(r.err, b.want):
					t.Errorf("%s %s: error %v, want %v", b.name, shape, r.err, b.want)
				case r != failing && r.err != nil:
					t.Errorf("%s %s: good delivery failed: %v", b.name, shape, r.err)
				case r != failing:
					want++
				}
			}
		}
	}
	mb, _ := s.GetMailbox(ctx, a, "INBOX")
	if got := len(mustList(t, s, mb.ID)); got != want {
		t.Errorf("%d messages stored, want %d", got, want)
	}
	if acct, _ := s.GetAccountByID(ctx, full); acct.UsedBytes != 0 {
		t.Errorf("refused deliveries charged %d bytes", acct.UsedBytes)
	}
	checkStore(t, s)
}

func mustList(t *testing.T, s *Store, mailboxID int64) []store.MessageMeta {
	t.Helper()
	ms, err := s.ListMessages(t.Context(), mailboxID)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
