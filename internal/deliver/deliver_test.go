package deliver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
)

type fixture struct {
	st  store.Store
	m   *accounts.Manager
	d   *deliver.Deliverer
	ids map[string]int64
}

func setup(t *testing.T, relay bool) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, m: accounts.NewManager(st), ids: map[string]int64{}}
	f.d = deliver.New(st, deliver.Config{MaxMessageBytes: 1 << 20, Relay: relay}, log)
	ctx := context.Background()
	for _, dom := range []string{"example.com", "bücher.example"} {
		if err := f.m.AddDomain(ctx, dom); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"alice@example.com", "bob@example.com", "carol@xn--bcher-kva.example"} {
		a, err := f.m.AddUser(ctx, u, "pw-"+u)
		if err != nil {
			t.Fatal(err)
		}
		f.ids[u] = a.ID
	}
	return f
}

func TestResolve(t *testing.T) {
	f := setup(t, false)
	ctx := context.Background()
	if err := f.m.AddAlias(ctx, "team@example.com", []string{"alice@example.com", "bob@example.com"}, false); err != nil {
		t.Fatal(err)
	}
	if err := f.m.AddAlias(ctx, "all@example.com", []string{"team@example.com", "carol@bücher.example"}, false); err != nil {
		t.Fatal(err)
	}
	alice, bob, carol := f.ids["alice@example.com"], f.ids["bob@example.com"], f.ids["carol@xn--bcher-kva.example"]
	cases := []struct {
		addr string
		want []int64
		err  error
	}{
		{"alice@example.com", []int64{alice}, nil},
		{"ALICE@Example.COM", []int64{alice}, nil},
		{"alice+news@example.com", []int64{alice}, nil},
		{"team@example.com", []int64{alice, bob}, nil},
		{"team+x@example.com", []int64{alice, bob}, nil},
		{"all@example.com", []int64{alice, bob, carol}, nil},
		{"carol@bücher.example", []int64{carol}, nil},
		{"carol@XN--BCHER-KVA.example", []int64{carol}, nil},
		{"nobody@example.com", nil, deliver.ErrUnknownUser},
		{"someone@elsewhere.example", nil, deliver.ErrNotLocal},
		{"not an address", nil, deliver.ErrBadAddress},
		{strings.Repeat("a", 65) + "@example.com", nil, deliver.ErrBadAddress},
	}
	for _, c := range cases {
		r, err := f.d.Resolve(ctx, c.addr)
		if !errors.Is(err, c.err) {
			t.Errorf("Resolve(%q) error = %v, want %v", c.addr, err, c.err)
			continue
		}
		if c.err == nil && fmt.Sprint(r.Accounts) != fmt.Sprint(c.want) {
			t.Errorf("Resolve(%q) = %v, want %v", c.addr, r.Accounts, c.want)
		}
	}
}

func TestCatchAllAndPostmaster(t *testing.T) {
	f := setup(t, false)
	ctx := context.Background()
	if _, err := f.d.Resolve(ctx, "postmaster@example.com"); !errors.Is(err, deliver.ErrUnknownUser) {
		t.Fatalf("postmaster without admin: %v", err)
	}
	if err := f.st.SetAdmin(ctx, f.ids["bob@example.com"], true); err != nil {
		t.Fatal(err)
	}
	r, err := f.d.Resolve(ctx, "Postmaster@example.com")
	if err != nil || len(r.Accounts) != 1 || r.Accounts[0] != f.ids["bob@example.com"] {
		t.Fatalf("postmaster → %v, %v; want bob", r.Accounts, err)
	}
	if err := f.m.SetCatchAll(ctx, "example.com", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	r, err = f.d.Resolve(ctx, "whoever@example.com")
	if err != nil || len(r.Accounts) != 1 || r.Accounts[0] != f.ids["alice@example.com"] {
		t.Fatalf("catch-all → %v, %v", r.Accounts, err)
	}
}

func TestRemoteTargets(t *testing.T) {
	for _, relay := range []bool{false, true} {
		f := setup(t, relay)
		ctx := context.Background()
		if err := f.m.AddAlias(ctx, "fwd@example.com", []string{"alice@example.com", "far@remote.example"}, false); err != nil {
			t.Fatal(err)
		}
		r, err := f.d.Resolve(ctx, "fwd@example.com")
		if !relay {
			if !errors.Is(err, deliver.ErrRelayUnavailable) {
				t.Fatalf("relay off: %v", err)
			}
			if _, err := f.d.Remote("x@remote.example"); !errors.Is(err, deliver.ErrRelayUnavailable) {
				t.Fatalf("Remote with relay off: %v", err)
			}
			continue
		}
		if err != nil || len(r.Remote) != 1 || r.Remote[0] != "far@remote.example" || len(r.Accounts) != 1 {
			t.Fatalf("relay on: %+v, %v", r, err)
		}
		if err := f.d.Deliver(ctx, &deliver.Message{From: "s@x.example", Recipients: []deliver.Recipient{r}, Body: strings.NewReader("Subject: fwd\r\n\r\nhi\r\n")}); err != nil {
			t.Fatal(err)
		}
		q, err := f.st.ListQueue(ctx)
		if err != nil || len(q) != 1 || q[0].Domain != "remote.example" || q[0].Recipients[0].Address != "far@remote.example" {
			t.Fatalf("queue = %+v, %v", q, err)
		}
	}
}

// One message to many recipients is stored once and filed once per
// account, even when an account is reached twice.
func TestDeliverOnceToMany(t *testing.T) {
	f := setup(t, false)
	ctx := context.Background()
	if err := f.m.AddAlias(ctx, "team@example.com", []string{"alice@example.com", "bob@example.com"}, false); err != nil {
		t.Fatal(err)
	}
	var rcpts []deliver.Recipient
	for _, a := range []string{"team@example.com", "alice@example.com", "carol@bücher.example"} {
		r, err := f.d.Resolve(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		rcpts = append(rcpts, r)
	}
	body := "From: s@x.example\r\nSubject: hello\r\n\r\nbody\r\n"
	if err := f.d.Deliver(ctx, &deliver.Message{From: "s@x.example", Recipients: rcpts, Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	blobs := map[string]bool{}
	for u, id := range f.ids {
		mb, err := f.st.GetMailbox(ctx, id, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := f.st.ListMessages(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 {
			t.Fatalf("%s has %d messages, want 1", u, len(msgs))
		}
		full, err := f.st.GetMessages(ctx, mb.ID, []uint32{msgs[0].UID})
		if err != nil {
			t.Fatal(err)
		}
		blobs[full[0].BlobID] = true
		if full[0].Info.Envelope.Subject != "hello" {
			t.Errorf("subject = %q", full[0].Info.Envelope.Subject)
		}
		r, err := f.st.OpenBlob(ctx, full[0].BlobID)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		r.Close()
		if string(got) != body {
			t.Errorf("stored body differs: %q", got)
		}
	}
	if len(blobs) != 1 {
		t.Errorf("body stored %d times, want once", len(blobs))
	}
}

func TestAppendQuotaAndSize(t *testing.T) {
	f := setup(t, false)
	ctx := context.Background()
	alice := f.ids["alice@example.com"]
	if err := f.st.SetQuota(ctx, alice, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.Append(ctx, alice, "Sent", []string{store.FlagSeen}, timeZero(), strings.NewReader(strings.Repeat("x", 200))); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("over quota append: %v", err)
	}
	got, err := f.d.Append(ctx, alice, "Sent", []string{store.FlagSeen}, timeZero(), strings.NewReader("Subject: s\r\n\r\nhi\r\n"))
	if err != nil || got.UID == 0 {
		t.Fatalf("append: %+v %v", got, err)
	}
	if _, err := f.d.Append(ctx, alice, "NoSuch", nil, timeZero(), strings.NewReader("x")); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Fatalf("append to missing mailbox: %v", err)
	}
	big := strings.NewReader(strings.Repeat("y", 2<<20))
	if _, err := f.d.Append(ctx, f.ids["bob@example.com"], "INBOX", nil, timeZero(), big); !errors.Is(err, store.ErrTooBig) {
		t.Fatalf("too big: %v", err)
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	f := setup(t, false)
	ctx := context.Background()
	r, err := f.d.Resolve(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i)
			errs <- f.d.Deliver(ctx, &deliver.Message{Recipients: []deliver.Recipient{r}, Body: strings.NewReader(body)})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := f.st.GetMailbox(ctx, f.ids["alice@example.com"], "INBOX")
	msgs, err := f.st.ListMessages(ctx, mb.ID)
	if err != nil || len(msgs) != n {
		t.Fatalf("%d messages, %v; want %d", len(msgs), err, n)
	}
	problems, err := f.st.Check(ctx)
	if err != nil || len(problems) > 0 {
		t.Fatalf("check: %v %v", problems, err)
	}
}

func timeZero() (t time.Time) { return }
