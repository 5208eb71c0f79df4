package smtpd

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 display names in From:
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/msgauth"
	"github.com/ternmail/tern/internal/store"
)

var (
	replyBareLineEnding = reply(554, 5, 6, 0, "Message contains a bare CR or LF: lines must end with CRLF (RFC 5321 §2.3.8)")
	replyLoop           = reply(554, 5, 4, 6, "Too many Received header fields: mail loop?")
	replyNoFrom         = reply(554, 5, 6, 0, "Message has no usable From: header field (RFC 5322 §3.6.2)")
	replyBadHeader      = reply(554, 5, 6, 0, "Malformed header section")
	replyHeaderTooLarge = reply(552, 5, 3, 4, "Header section too large")
	replyLineTooLong    = reply(500, 5, 5, 0, "Line too long")
	replyTooBig         = reply(552, 5, 3, 4, "Message too big")
	replyQuotaData      = reply(552, 5, 2, 2, "Mailbox full")
	replyConnProblem    = reply(451, 4, 4, 2, "Connection problem while reading the message")
	// RFC 5321 §4.2.2 (452 insufficient system storage), RFC 3463 §3.4
	// (X.3.1 mail system full): the sender keeps the message and retries.
	replyStorageFull = reply(452, 4, 3, 1, "Insufficient system storage, try again later")
)

// Data receives one message (DATA, or all BDAT chunks) and delivers it.
// go-smtp answers 250 when Data returns nil: only after deliver.Deliver
// returned nil, i.e. once the message is durable.
func (s *session) Data(r io.Reader) error {
	// Until Reset: go-smtp drains what the client still sends after an
	// early refusal before it replies and resets.
	s.conn.inData.Store(true)
	done := make(chan struct{})
	defer close(done)
	s.mu.Lock()
	s.dataDone = done
	var tx transaction
	if s.tx != nil {
		tx = *s.tx
	}
	acct := s.account
	s.mu.Unlock()
	if len(tx.rcpts) == 0 {
		return replyBadSequence
	}

	size := &sizeReader{r: &cutReader{r: r, conn: s.conn}, max: s.srv.cfg.MaxMessageBytes}
	br := bufio.NewReaderSize(size, 32<<10)
	hdr, complete, err := readHeader(br, maxHeaderBytes)
	if err != nil {
		return s.dataError(err, size, nil)
	}
	lines := &lineChecker{}
	if err := lines.check(hdr); err != nil {
		return s.fail(replyBareLineEnding)
	}
	h := scanHeader(hdr)
	if h.received > s.srv.cfg.MaxReceivedHeaders {
		return s.fail(replyLoop)
	}

	var pre bytes.Buffer
	id := newID()
	s.writeTrace(&pre, &tx, id)
	if s.srv.cfg.Mode == Submission {
		if !complete {
			return s.fail(replyHeaderTooLarge)
		}
		if r := s.checkFrom(hdr, acct); r != nil {
			return r
		}
		// RFC 6409 §8.2, §8.3: the MSA may add Date and Message-ID.
		if !h.messageID {
			pre.WriteString("Message-ID: <" + rand.Text() + "@" + s.srv.cfg.Hostname + ">\r\n")
		}
		if !h.date {
			pre.WriteString("Date: " + time.Now().Format(time.RFC1123Z) + "\r\n")
		}
	}

	var body io.Reader = br
	if !tx.binary || !complete {
		lines.r = br
		body = lines
	}
	msg := &deliver.Message{
		From:       tx.from,
		Recipients: tx.rcpts,
		DSN:        tx.dsn,
		Notify:     tx.notify,
	}
	if s.needsCheck() {
		sp := &spool{}
		defer sp.close()
		if err := sp.fill(body); err != nil {
			return s.dataError(err, size, lines)
		}
		res, err := s.srv.checker.Check(s.ctx, msgauth.Envelope{IP: s.conn.remote, Helo: tx.helo, MailFrom: tx.from},
			io.MultiReader(bytes.NewReader(hdr), sp.reader()))
		if err != nil {
			s.logger().Error("authenticating message", "err", err)
			return replyTempFailure
		}
		level := slog.LevelDebug
		if res.Action != msgauth.Accept {
			level = slog.LevelInfo // a refusal or Junk: worth a line
		}
		s.logger().Log(s.ctx, level, "authenticated message", "id", id, "spf", res.SPF, "dmarc", res.DMARC,
			"action", res.Action.String(), "reason", res.Reason)
		if res.Action == msgauth.Reject {
			return reply(550, 5, 7, 1, res.Reason)
		}
		msg.Junk = res.Action == msgauth.Junk
		pre.WriteString(res.Header)
		body = sp.reader()
	}
	// RFC 8601 §5: only we speak for our name.
	hdr = msgauth.StripForged(hdr, s.srv.cfg.Hostname)
	msg.Body = io.MultiReader(bytes.NewReader(pre.Bytes()), bytes.NewReader(hdr), body)
	if err := s.srv.deliver.Deliver(s.ctx, msg); err != nil {
		return s.dataError(err, size, lines)
	}
	s.logger().Debug("message accepted", "id", id, "from", tx.from, "rcpts", len(tx.rcpts), "size", size.n)
	return nil
}

// needsCheck reports whether the message is authenticated before
// delivery: on the MX, with a Checker, from a client outside the trusted
// networks.
func (s *session) needsCheck() bool {
	if s.srv.cfg.Mode != MX || s.srv.checker == nil {
		return false
	}
	for _, p := range s.srv.cfg.TrustedNetworks {
		if p.Contains(s.conn.remote) {
			return false
		}
	}
	return true
}

// dataError maps a failed delivery to its reply. The readers' own errors
// come first: whatever the store made of them, the cause is the client's
// data. Only they are connection problems: a store's I/O error (a
// syscall.Errno, which is also a net.Error) is not.
func (s *session) dataError(err error, size *sizeReader, lines *lineChecker) error {
	fromClient := false
	switch {
	case lines != nil && lines.err != nil:
		return s.fail(replyBareLineEnding)
	case size.err != nil:
		err, fromClient = size.err, true
	}
	var se *smtp.SMTPError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se // go-smtp's ErrDataTooLarge, our own replies
	case errors.Is(err, smtp.ErrTooLongLine):
		return replyLineTooLong
	case errors.Is(err, store.ErrTooBig):
		return replyTooBig
	case errors.Is(err, store.ErrQuota):
		return replyQuotaData
	case errors.Is(err, deliver.ErrRelayUnavailable):
		return replyRelayUnavailable
	case errors.Is(err, store.ErrFull):
		s.logger().Error("delivering message: storage full", "err", err)
		return replyStorageFull
	case fromClient && (errors.Is(err, smtp.ErrDataReset) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) || errors.Is(err, net.ErrClosed)):
		s.logger().Info("message not received", "err", err)
		return replyConnProblem
	}
	s.logger().Error("delivering message", "err", err)
	return replyTempFailure
}

// checkFrom requires every From: address to be one the user may send as
// (RFC 6409 §6.1 leaves the policy to the MSA).
func (s *session) checkFrom(hdr []byte, acct *store.Account) *smtp.SMTPError {
	th, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return s.fail(replyBadHeader)
	}
	n := 0
	for _, v := range th.Values("From") {
		list, err := mail.ParseAddressList(v)
		if err != nil {
			return s.fail(replyNoFrom)
		}
		for _, a := range list {
			ok, err := accounts.CanSendAs(s.ctx, s.srv.st, *acct, a.Address)
			if err != nil && !errors.Is(err, accounts.ErrInvalidAddress) {
				s.logger().Error("checking From:", "err", err)
				return replyTempFailure
			}
			if !ok {
				return s.fail(reply(553, 5, 7, 1, "You are not allowed to send as <"+sanitize(a.Address, 254)+"> (From: header)"))
			}
			n++
		}
	}
	if n == 0 {
		return s.fail(replyNoFrom)
	}
	return nil
}

// readHeader reads the header section up to and including the empty line
// that ends it, or to the end of a message without body. complete is
// false when the section is over limit bytes; what was read is returned
// all the same and the rest is left in br.
func readHeader(br *bufio.Reader, limit int) (hdr []byte, complete bool, err error) {
	lineStart := true
	for {
		seg, err := br.ReadSlice('\n')
		if lineStart && err == nil && (len(seg) == 2 && seg[0] == '\r' || len(seg) == 1) {
			return append(hdr, seg...), true, nil
		}
		hdr = append(hdr, seg...)
		switch {
		case err == bufio.ErrBufferFull:
			lineStart = false
		case err == io.EOF:
			return hdr, true, nil
		case err != nil:
			return nil, false, err
		default:
			lineStart = true
		}
		if len(hdr) > limit {
			return hdr, false, nil
		}
	}
}

// headerFacts is what Data needs to know of a header section.
type headerFacts struct {
	received        int
	messageID, date bool
}

// scanHeader finds the fields counted or looked for, by name at the start
// of a line (not a continuation line).
func scanHeader(hdr []byte) headerFacts {
	var f headerFacts
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		switch {
		case bytes.EqualFold(name, []byte("Received")):
			f.received++
		case bytes.EqualFold(name, []byte("Message-ID")):
			f.messageID = true
		case bytes.EqualFold(name, []byte("Date")):
			f.date = true
		}
	}
	return f
}

// lineChecker refuses bare CR and bare LF (RFC 5321 §2.3.8). go-smtp ends
// DATA only at CRLF.CRLF and passes "\n.\n", "\r.\r" and "\r\n.\n" on as
// data (the last with its dot removed), so nothing can be smuggled past us
// as a second message; but stored and relayed, such a body would end at a
// different place for a server that is lax about line endings. Checking
// what go-smtp passes on catches every such sequence: each holds a CR or
// LF that is not part of a CRLF pair.
type lineChecker struct {
	r      io.Reader
	prevCR bool
	err    error
}

// check looks only at the line endings, found with bytes.IndexByte and
// counted with bytes.Count, which go through a body many bytes at a time:
// every LF must follow a CR, and every CR but a last one must come before
// an LF, so the CRs number the LFs plus one if p ends in CR.
func (l *lineChecker) check(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if l.prevCR != (p[0] == '\n') {
		l.err = replyBareLineEnding
		return l.err
	}
	lfs := 0
	for i := 1; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if p[i-1] != '\r' {
			l.err = replyBareLineEnding
			return l.err
		}
		lfs++
		i++
	}
	l.prevCR = p[len(p)-1] == '\r'
	crs := lfs
	if l.prevCR {
		crs++
	}
	if bytes.Count(p, []byte{'\r'}) != crs {
		l.err = replyBareLineEnding
		return l.err
	}
	return nil
}

func (l *lineChecker) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	if cerr := l.check(p[:n]); cerr != nil {
		return 0, cerr
	}
	if err == io.EOF && l.prevCR {
		l.err = replyBareLineEnding
		return n, l.err
	}
	return n, err
}

// cutReader turns the end of the message into io.ErrUnexpectedEOF when
// the client's connection ended first. go-smtp (v0.25.1) reads a BDAT
// chunk with io.Copy from a LimitReader, so a chunk cut short by the
// client closing the connection ends without error, and after BDAT LAST
// the truncated message would be delivered. Not covered: over TLS, a
// client that ends the chunk with a close_notify alert (tls.Conn returns
// EOF without the TCP connection having ended yet); that needs go-smtp to
// check the chunk's length itself.
type cutReader struct {
	r    io.Reader
	conn *conn
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF && c.conn.readFailed.Load() {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// sizeReader enforces MaxMessageBytes on what the client sends, whatever
// go-smtp checked (it does for DATA and for the sum of BDAT chunks).
type sizeReader struct {
	r   io.Reader
	max int64
	n   int64
	err error
}

func (s *sizeReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.n > s.max {
		s.err = smtp.ErrDataTooLarge
		return 0, s.err
	}
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// newID names one received message in the Received field and the log.
func newID() string { return rand.Text()[:16] }
