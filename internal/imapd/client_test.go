package imapd

import (
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const multipartMsg = "From: Carol <carol@example.org>\r\n" +
	"To: alice@example.test, Dave <dave@example.org>\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Date: Tue, 3 Jan 2006 10:00:00 +0000\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"\r\n" +
	"first part with needle\r\n" +
	"--b1\r\n" +
	"Content-Type: application/octet-stream; name=\"a.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"a.bin\"\r\n" +
	"\r\n" +
	"AAECAwQ=\r\n" +
	"--b1--\r\n"

func (e *env) goClient(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		e.t.Fatal(err)
	}
	return c
}

func TestGoClient(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	e.put("INBOX", testMsg)
	e.put("INBOX", multipartMsg)
	c := e.goClient(nil)

	caps := c.Caps()
	for _, cp := range []imap.Cap{imap.CapIMAP4rev2, imap.CapMove, imap.CapUIDPlus, imap.CapIdle, imap.CapCondStore, imap.CapESearch} {
		if !caps.Has(cp) {
			t.Errorf("missing capability %s", cp)
		}
	}
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range boxes {
		names = append(names, b.Mailbox)
	}
	if !slices.Contains(names, "INBOX") || !slices.Contains(names, "Sent") {
		t.Fatalf("LIST: %v", names)
	}
	if err := c.Create("Projects/Tern", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 {
		t.Fatalf("SELECT: %d messages", sel.NumMessages)
	}

	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		RFC822Size: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}, {Part: []int{2}, Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("FETCH: %d messages", len(msgs))
	}
	m := msgs[1]
	if m.Envelope.Subject != "Grüße" || len(m.Envelope.To) != 2 || m.Envelope.From[0].Addr() != "carol@example.org" {
		t.Errorf("envelope: %+v", m.Envelope)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("bodystructure: %#v", m.BodyStructure)
	}
	att := mp.Children[1].(*imap.BodyStructureSinglePart)
	if !strings.EqualFold(att.Encoding, "base64") || att.Disposition().Value != "attachment" {
		t.Errorf("attachment: %+v", att)
	}
	if got := string(m.FindBodySection(&imap.FetchItemBodySection{Part: []int{2}, Peek: true})); got != "AAECAwQ=" {
		t.Errorf("BODY[2] = %q", got)
	}
	bin, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BinarySection: []*imap.FetchItemBinarySection{{Part: []int{2}, Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := bin[0].BinarySection; len(got) != 1 || string(got[0].Bytes) != "\x00\x01\x02\x03\x04" {
		t.Errorf("BINARY[2] = %+v", got)
	}

	// STORE and SEARCH.
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	search := func(crit *imap.SearchCriteria) []uint32 {
		t.Helper()
		d, err := c.UIDSearch(crit, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		var out []uint32
		for _, u := range d.AllUIDs() {
			out = append(out, uint32(u))
		}
		return out
	}
	if got := search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}); !slices.Equal(got, []uint32{1}) {
		t.Errorf("SEARCH FLAGGED = %v", got)
	}
	if got := search(&imap.SearchCriteria{Body: []string{"NEEDLE"}}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("SEARCH BODY = %v", got)
	}
	if got := search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "grüße"}}}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("SEARCH SUBJECT = %v", got)
	}
	if got := search(&imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{"$Work"}}}, Larger: 10}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("SEARCH NOT KEYWORD = %v", got)
	}
	if got := search(&imap.SearchCriteria{Since: time.Now().Add(-48 * time.Hour)}); len(got) != 2 {
		t.Errorf("SEARCH SINCE = %v", got)
	}

	// COPY, MOVE, EXPUNGE.
	cp, err := c.Copy(imap.SeqSetNum(1), "Projects/Tern").Wait()
	if err != nil || cp.UIDValidity == 0 {
		t.Fatalf("COPY: %+v %v", cp, err)
	}
	mv, err := c.Move(imap.SeqSetNum(2), "Archive").Wait()
	if err != nil || mv.UIDValidity == 0 {
		t.Fatalf("MOVE: %+v %v", mv, err)
	}
	if n := len(e.metas("Archive")); n != 1 {
		t.Fatalf("Archive has %d messages", n)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	exp, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(exp, []uint32{1}) {
		t.Fatalf("EXPUNGE = %v, %v", exp, err)
	}
	if n := len(e.metas("INBOX")); n != 0 {
		t.Fatalf("INBOX has %d messages", n)
	}

	// APPEND with flags, then STATUS.
	body := "Subject: appended\r\n\r\nhello\r\n"
	app := c.Append("Projects/Tern", int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	io.WriteString(app, body)
	app.Close()
	ad, err := app.Wait()
	if err != nil || ad.UID == 0 {
		t.Fatalf("APPEND: %+v %v", ad, err)
	}
	st, err := c.Status("Projects/Tern", &imap.StatusOptions{NumMessages: true, NumUnseen: true, Size: true}).Wait()
	if err != nil || *st.NumMessages != 2 || *st.NumUnseen != 1 {
		t.Fatalf("STATUS: %+v %v %v %v", st, err, *st.NumMessages, *st.NumUnseen)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestIdleWokenByDelivery(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	exists := make(chan uint32, 10)
	c := e.goClient(&imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
		if d.NumMessages != nil {
			exists <- *d.NumMessages
		}
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	e.put("INBOX", testMsg)
	select {
	case n := <-exists:
		if n != 1 {
			t.Errorf("EXISTS %d", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("IDLE not woken by delivery")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestTwoSessions: each session sees the other's flag changes and
// expunges, EXPUNGE deferred during FETCH by sequence number.
func TestTwoSessions(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	for range 3 {
		e.put("INBOX", testMsg)
	}
	a, b := e.login(), e.login()
	a.cmd("s SELECT INBOX")
	b.cmd("s SELECT INBOX")
	b.cmd(`1 STORE 2 +FLAGS (\Deleted \Answered)`)
	if out := a.cmd("n NOOP"); !has(out, `* 2 FETCH (UID 2 FLAGS (\Answered \Deleted))`) {
		t.Fatalf("flag change not seen: %q", out)
	}
	b.cmd("2 EXPUNGE")
	// FETCH by sequence number may not announce the expunge.
	out := a.cmd("f FETCH 1:* (FLAGS)")
	if has(out, "EXPUNGE") || len(out) != 3 {
		t.Fatalf("FETCH during pending expunge: %q", out)
	}
	out = a.cmd("n NOOP")
	if !has(out, "* 2 EXPUNGE") {
		t.Fatalf("expunge not announced: %q", out)
	}
	out = a.cmd("f FETCH 2 (UID)")
	if !has(out, "* 2 FETCH (UID 3)") {
		t.Fatalf("sequence numbers not renumbered: %q", out)
	}
	e.put("INBOX", testMsg)
	if out := b.cmd("u UID FETCH 1:* (UID)"); !has(out, "* 3 EXISTS") {
		t.Fatalf("new message not announced: %q", out)
	}
}

func TestStartTLSAndImplicitTLS(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	c, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: e.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c2, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if !c2.Caps().Has(imap.AuthCap("PLAIN")) {
		t.Errorf("no AUTH=PLAIN over TLS: %v", c2.Caps())
	}
	if err := c2.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	// Pipelined plaintext after STARTTLS is refused.
	raw := e.dial()
	raw.Send("a STARTTLS\r\nb NOOP")
	raw.Expect("a BAD")
}

func TestShutdownClosesIdleSessions(t *testing.T) {
	e := newEnv(t, envOpts{plain: true})
	c := e.login()
	c.cmd("s SELECT INBOX")
	c.Send("i IDLE")
	c.Expect("+ ")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error)
	go func() { done <- e.srv.Shutdown(ctx) }()
	c.Expect("* BYE")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", e.addr); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Shutdown")
	}
}
