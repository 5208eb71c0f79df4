package storetest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/store"
)

func testBlobDedupeGC(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	b := newAccount(t, st, "other@example.com")
	body := message(42)
	d1 := deliver(t, st, a.ID, "INBOX", body)
	d2 := deliver(t, st, b.ID, "INBOX", body)
	m1, _ := st.GetMessages(c, d1.MailboxID, []uint32{d1.UID})
	m2, _ := st.GetMessages(c, d2.MailboxID, []uint32{d2.UID})
	if m1[0].BlobID != m2[0].BlobID {
		t.Fatalf("same body, two blob IDs: %s %s", m1[0].BlobID, m2[0].BlobID)
	}
	id := m1[0].BlobID
	checkClean(t, st)
	n, err := st.CollectGarbage(c, 0)
	must(t, err, "CollectGarbage")
	if n != 0 {
		t.Errorf("CollectGarbage removed %d referenced blobs", n)
	}
	_, err = st.Expunge(c, d1.MailboxID, []uint32{d1.UID})
	must(t, err, "Expunge")
	r, err := st.OpenBlob(c, id)
	must(t, err, "OpenBlob with one reference left")
	r.Close()
	_, err = st.Expunge(c, d2.MailboxID, []uint32{d2.UID})
	must(t, err, "Expunge")
	n, err = st.CollectGarbage(c, 0)
	must(t, err, "CollectGarbage")
	if n != 1 {
		t.Errorf("CollectGarbage removed %d, want exactly 1 (the body is stored once)", n)
	}
	_, err = st.OpenBlob(c, id)
	wantErr(t, err, store.ErrNotFound, "OpenBlob after GC")
}

func testLargeBlob(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	rng := rand.New(rand.NewPCG(1, 2))
	// Sizes around the stores' inline limits (64 KiB, 192 KiB, 1 MiB)
	// and far past them.
	sizes := []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 192 << 10, 192<<10 + 1, 1 << 20, 1<<20 + 1, 3<<20 + 17}
	for _, size := range sizes {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(rng.IntN(256))
		}
		blob, err := st.Spool(c, bytes.NewReader(body), 10<<20)
		must(t, err, "Spool")
		if blob.Size != int64(size) {
			t.Fatalf("Spool size %d, want %d", blob.Size, size)
		}
		ds, err := st.Deliver(c, &store.Delivery{Blob: blob, Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}})
		must(t, err, "Deliver")
		r, err := st.OpenBlob(c, blob.ID)
		must(t, err, "OpenBlob")
		if r.Size() != int64(size) {
			t.Errorf("size %d: BlobReader.Size = %d", size, r.Size())
		}
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		must(t, err, "read blob")
		if !bytes.Equal(got, body) {
			t.Errorf("size %d: body differs after round trip", size)
		}
		if size > 10 {
			part := make([]byte, 10)
			_, err := r.ReadAt(part, int64(size-10))
			if err != nil && err != io.EOF {
				t.Errorf("ReadAt: %v", err)
			}
			if !bytes.Equal(part, body[size-10:]) {
				t.Errorf("size %d: ReadAt tail differs", size)
			}
		}
		r.Close()
		_, err = st.Expunge(c, ds[0].MailboxID, []uint32{ds[0].UID})
		must(t, err, "Expunge")
	}
	n, err := st.CollectGarbage(c, 0)
	must(t, err, "CollectGarbage")
	if n != len(sizes) {
		t.Errorf("CollectGarbage removed %d, want %d", n, len(sizes))
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func testSpoolTooBig(t *testing.T, st store.Store) {
	for _, max := range []int64{100, 64 << 10, 1 << 20} {
		cr := &countingReader{r: io.LimitReader(zeros{}, 5<<20)}
		_, err := st.Spool(ctx(t), cr, max)
		wantErr(t, err, store.ErrTooBig, fmt.Sprintf("Spool over %d", max))
		if cr.n > max+1 {
			t.Errorf("Spool(max %d) read %d bytes", max, cr.n)
		}
		b, err := st.Spool(ctx(t), io.LimitReader(zeros{}, max), max)
		must(t, err, fmt.Sprintf("Spool of exactly %d", max))
		if b.Size != max {
			t.Errorf("size %d", b.Size)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func testQuota(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	must(t, st.SetQuota(c, a.ID, 10000), "SetQuota")
	body := strings.Repeat("x", 6000)
	d := func(enforce bool) error {
		_, err := st.Deliver(c, &store.Delivery{Blob: spool(t, st, body), EnforceQuota: enforce,
			Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}})
		return err
	}
	must(t, d(true), "first delivery under quota")
	wantErr(t, d(true), store.ErrQuota, "delivery over quota")
	mb := mailbox(t, st, a.ID, "INBOX")
	if got := listUIDs(t, st, mb.ID); len(got) != 1 {
		t.Errorf("refused delivery left messages: %v", got)
	}
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 6000 {
		t.Errorf("UsedBytes = %d, want 6000", acct.UsedBytes)
	}
	must(t, d(false), "delivery without enforcement")
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 12000 {
		t.Errorf("UsedBytes = %d, want 12000", acct.UsedBytes)
	}
	_, _, err := st.Copy(c, mb.ID, []uint32{1}, mailbox(t, st, a.ID, "Archive").ID)
	wantErr(t, err, store.ErrQuota, "Copy over quota")
	_, err = st.Expunge(c, mb.ID, []uint32{1, 2})
	must(t, err, "Expunge")
	if acct, _ := st.GetAccountByID(c, a.ID); acct.UsedBytes != 0 {
		t.Errorf("UsedBytes after expunge = %d", acct.UsedBytes)
	}
	must(t, st.SetQuota(c, a.ID, 0), "SetQuota unlimited")
	must(t, d(true), "delivery with no quota")
}

func testConcurrentDeliver(t *testing.T, st store.Store) {
	a := newAccount(t, st, "user@example.com")
	const n = 64
	uids := make([]uint32, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			b, err := st.Spool(ctx(t), strings.NewReader(message(i)), 1<<20)
			if err != nil {
				errs <- err
				return
			}
			d, err := st.Deliver(ctx(t), &store.Delivery{Blob: b,
				Local: []store.Target{{AccountID: a.ID, Mailbox: "INBOX"}}})
			if err != nil {
				errs <- err
				return
			}
			uids[i] = d[0].UID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Deliver: %v", err)
	}
	seen := map[uint32]bool{}
	for _, u := range uids {
		if u == 0 || seen[u] {
			t.Errorf("UID %d duplicate or missing", u)
		}
		seen[u] = true
	}
	mb := mailbox(t, st, a.ID, "INBOX")
	if got := listUIDs(t, st, mb.ID); len(got) != n {
		t.Errorf("%d messages listed, want %d", len(got), n)
	}
	st2, err := st.MailboxStatus(ctx(t), mb.ID)
	must(t, err, "MailboxStatus")
	if st2.Messages != n || st2.Unseen != n || st2.UIDNext != n+1 {
		t.Errorf("MailboxStatus = %+v", st2)
	}
}

// testFailingDeliveryIsolated runs good and bad deliveries at once: the
// bad ones (missing mailbox, over quota) fail, the good ones all land.
func testFailingDeliveryIsolated(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	full := newAccount(t, st, "full@example.com")
	must(t, st.SetQuota(c, full.ID, 1), "SetQuota")
	var wg sync.WaitGroup
	const n = 30
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			tg := store.Target{AccountID: a.ID, Mailbox: "INBOX"}
			switch i % 3 {
			case 1:
				tg.Mailbox = "Missing"
			case 2:
				tg.AccountID = full.ID
			}
			b, err := st.Spool(c, strings.NewReader(message(i)), 1<<20)
			if err == nil {
				_, err = st.Deliver(c, &store.Delivery{Blob: b, EnforceQuota: true, Local: []store.Target{tg}})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch i % 3 {
		case 0:
			must(t, err, "good delivery")
		case 1:
			wantErr(t, err, store.ErrNoSuchMailbox, "delivery to missing mailbox")
		case 2:
			wantErr(t, err, store.ErrQuota, "delivery over quota")
		}
	}
	if got := listUIDs(t, st, mailbox(t, st, a.ID, "INBOX").ID); len(got) != n/3 {
		t.Errorf("%d good deliveries landed, want %d", len(got), n/3)
	}
}

func testQueue(t *testing.T, st store.Store) {
	c := ctx(t)
	a := newAccount(t, st, "user@example.com")
	start := time.Now().Add(-time.Second)
	ds, err := st.Deliver(c, &store.Delivery{
		Blob:  spool(t, st, message(1)),
		From:  "user@example.com",
		Local: []store.Target{{AccountID: a.ID, Mailbox: "Sent", Flags: []string{store.FlagSeen}}},
		Remote: []store.QueueRecipient{
			{Address: "a@remote.example", Notify: "FAILURE"},
			{Address: "b@other.example"},
			{Address: "c@remote.example", Original: "c-alias@example.com"},
		},
		DSN: store.DSN{Ret: "HDRS", EnvID: "env1"},
	})
	must(t, err, "Deliver")
	if len(ds) != 1 {
		t.Fatalf("Delivered %v", ds)
	}
	q, err := st.ListQueue(c)
	must(t, err, "ListQueue")
	if len(q) != 2 {
		t.Fatalf("ListQueue = %d entries, want 2 (one per domain)", len(q))
	}
	byDomain := map[string]store.QueueEntry{}
	for _, e := range q {
		byDomain[e.Domain] = e
	}
	r := byDomain["remote.example"]
	if len(r.Recipients) != 2 || r.Recipients[0].Address != "a@remote.example" || r.Recipients[0].Notify != "FAILURE" ||
		r.Recipients[1].Original != "c-alias@example.com" || r.From != "user@example.com" || r.DSN.EnvID != "env1" ||
		r.NextAttempt.Before(start) || r.BlobID == "" {
		t.Errorf("queue entry = %+v", r)
	}
	if len(byDomain["other.example"].Recipients) != 1 {
		t.Errorf("other.example entry = %+v", byDomain["other.example"])
	}
	e, evs, err := st.GetQueueEntry(c, r.ID)
	must(t, err, "GetQueueEntry")
	if e.ID != r.ID || len(evs) != 1 || evs[0].Kind != "queued" {
		t.Errorf("GetQueueEntry = %+v, %+v", e, evs)
	}
	must(t, st.AddEvent(c, store.Event{QueueID: r.ID, Kind: "attempt", Detail: "451 try later"}), "AddEvent")
	_, evs, _ = st.GetQueueEntry(c, r.ID)
	if len(evs) != 2 || evs[1].Kind != "attempt" || evs[1].Time.IsZero() {
		t.Errorf("events = %+v", evs)
	}
	_, _, err = st.GetQueueEntry(c, 1<<40)
	wantErr(t, err, store.ErrNotFound, "GetQueueEntry missing")
	rd, err := st.OpenBlob(c, r.BlobID)
	must(t, err, "OpenBlob of queued message")
	rd.Close()

	// Remote only.
	_, err = st.Deliver(c, &store.Delivery{Blob: spool(t, st, message(2)), Remote: []store.QueueRecipient{{Address: "x@third.example"}}})
	must(t, err, "Deliver remote only")
	if q, _ := st.ListQueue(c); len(q) != 3 {
		t.Errorf("ListQueue = %d entries, want 3", len(q))
	}
}

func testSubscribe(t *testing.T, st store.Store) {
	a := newAccount(t, st, "user@example.com")
	b := newAccount(t, st, "other@example.com")
	chA, cancelA := st.Subscribe(a.ID)
	defer cancelA()
	chB, cancelB := st.Subscribe(b.ID)
	deliver(t, st, a.ID, "INBOX", message(1))
	select {
	case <-chA:
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber not signalled after delivery")
	}
	select {
	case <-chB:
		t.Error("other account's subscriber signalled")
	default:
	}
	// Many changes coalesce into one pending signal and never block.
	for i := range 3 {
		deliver(t, st, a.ID, "INBOX", message(i+2))
	}
	<-chA
	mb := mailbox(t, st, a.ID, "INBOX")
	_, _, err := st.StoreFlags(ctx(t), mb.ID, []uint32{1}, store.FlagsAdd, []string{store.FlagSeen}, 0)
	must(t, err, "StoreFlags")
	select {
	case <-chA:
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber not signalled after StoreFlags")
	}
	cancelB()
	cancelB()
	deliver(t, st, b.ID, "INBOX", message(9))
}

func testLock(t *testing.T, st store.Store) {
	rel, err := st.Lock(ctx(t), "pop3:1")
	must(t, err, "Lock")
	_, err = st.Lock(ctx(t), "pop3:1")
	wantErr(t, err, store.ErrInUse, "Lock held")
	rel2, err := st.Lock(ctx(t), "pop3:2")
	must(t, err, "Lock other name")
	rel2()
	rel()
	rel3, err := st.Lock(ctx(t), "pop3:1")
	must(t, err, "Lock after release")
	rel3()
}
