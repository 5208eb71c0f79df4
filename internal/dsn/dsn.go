// Package dsn writes delivery status notifications: RFC 3464
// multipart/report messages telling a sender that some recipients of a
// message failed (or are delayed), with the original message's header
// (RET=HDRS, the default) or the whole message (RET=FULL, RFC 3461 §4.3).
//
// A report is a pure function of its Report and the original message, so
// tests compare it with golden files.
package dsn

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// Actions (RFC 3464 §2.3.3).
const (
	Failed  = "failed"
	Delayed = "delayed"
)

// Report describes one notification about one message.
type Report struct {
	ReportingMTA string // our host name
	// FromDomain is the domain of the report's From (MAILER-DAEMON@);
	// empty means ReportingMTA.
	FromDomain string
	To         string    // the original envelope sender, who gets the report
	EnvID      string    // RFC 3461 ENVID of the original, or ""
	Ret        string    // "FULL" returns the whole message; otherwise headers only
	Arrival    time.Time // when we accepted the original
	Date       time.Time // when the report is written
	Recipients []Recipient
	// MaxFull bounds the original returned with RET=FULL; past it only the
	// header is returned. Zero means 10 MiB.
	MaxFull int64
}

// Recipient is the outcome for one recipient.
type Recipient struct {
	Final       string // the address we tried
	Original    string // RFC 3461 ORCPT ("rfc822;addr"), or ""
	Action      string // Failed or Delayed
	Status      string // enhanced status code, e.g. "5.1.1" (RFC 3463)
	RemoteMTA   string // the host that answered, or ""
	Diagnostic  string // the SMTP reply, e.g. "550 5.1.1 no such user", or our reason
	LastAttempt time.Time
}

// Write writes the report as a complete message (headers and body, CRLF
// line ends) to w. original is the message the report is about, of the
// given size.
func Write(w io.Writer, r Report, original io.Reader, size int64) error {
	if r.MaxFull <= 0 {
		r.MaxFull = 10 << 20
	}
	full := strings.EqualFold(r.Ret, "FULL") && size <= r.MaxFull
	boundary, msgID := r.ids()
	delayed := len(r.Recipients) > 0
	for _, rc := range r.Recipients {
		if rc.Action != Delayed {
			delayed = false
		}
	}
	subject := "Undelivered Mail Returned to Sender"
	if delayed {
		subject = "Delayed Mail (still being retried)"
	}
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format+"\r\n", args...) }
	// RFC 3834 §5: Auto-Submitted keeps responders from answering.
	fromDomain := r.FromDomain
	if fromDomain == "" {
		fromDomain = r.ReportingMTA
	}
	p("From: Mail Delivery System <MAILER-DAEMON@%s>", fromDomain)
	p("To: <%s>", r.To)
	p("Subject: %s", subject)
	p("Date: %s", r.Date.Format(time.RFC1123Z))
	p("Message-ID: <%s@%s>", msgID, r.ReportingMTA)
	p("Auto-Submitted: auto-replied")
	p("MIME-Version: 1.0")
	p("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"", boundary)
	p("")
	p("This is a delivery status notification in MIME format.")
	p("")
	// Part 1: for people (RFC 3464 §2 requires it first).
	p("--%s", boundary)
	r.writeHuman(p, delayed)
	// Part 2: for programs (RFC 3464 §2.2, §2.3).
	p("--%s", boundary)
	r.writeStatus(p)
	// Part 3: the original, whole or its header (RFC 3462 §2).
	p("--%s", boundary)
	if full {
		p("Content-Type: message/rfc822")
		p("")
		if _, err := io.Copy(bw, original); err != nil {
			return fmt.Errorf("dsn: read original: %w", err)
		}
	} else {
		p("Content-Type: text/rfc822-headers")
		p("")
		if err := copyHeader(bw, original); err != nil {
			return fmt.Errorf("dsn: read original: %w", err)
		}
	}
	p("")
	p("--%s--", boundary)
	return bw.Flush()
}

// ids derives the MIME boundary and Message-ID from the report itself, so
// a report is reproducible (golden tests) yet differs between reports.
func (r Report) ids() (boundary, msgID string) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%d\n", r.ReportingMTA, r.To, r.EnvID, r.Date.UnixNano())
	for _, rc := range r.Recipients {
		fmt.Fprintf(h, "%s\n%s\n%s\n", rc.Final, rc.Status, rc.Diagnostic)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return "tern-dsn-" + sum[:24], "dsn-" + sum[24:48]
}

// copyHeader copies the header of a message, up to its blank line, with
// CRLF line ends. A header longer than 1 MiB is cut: it is only evidence.
func copyHeader(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(io.LimitReader(r, 1<<20))
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if err == nil || err == io.EOF {
				return nil
			}
			return err
		}
		if _, werr := io.WriteString(w, line+"\r\n"); werr != nil {
			return werr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// oneLine folds a possibly multi-line reply into one header-safe line.
func oneLine(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	return strings.TrimSpace(s)
}

// addrType writes an ORCPT as "type; address" (RFC 3464 §2.3.1).
func addrType(orcpt string) string {
	if t, a, ok := strings.Cut(orcpt, ";"); ok {
		return strings.TrimSpace(t) + "; " + strings.TrimSpace(a)
	}
	return "rfc822; " + orcpt
}

func (r Report) writeHuman(p func(string, ...any), delayed bool) {
	p("Content-Type: text/plain; charset=utf-8")
	p("Content-Transfer-Encoding: 8bit")
	p("")
	p("This is the mail system at %s.", r.ReportingMTA)
	p("")
	if delayed {
		p("Your message could not be delivered yet to the recipients below.")
		p("It will be retried; you need not send it again.")
	} else {
		p("Your message could not be delivered to the recipients below.")
		p("This is a permanent error; it will not be retried.")
	}
	p("")
	for _, rc := range r.Recipients {
		if rc.RemoteMTA != "" {
			p("<%s>: host %s said: %s", rc.Final, rc.RemoteMTA, oneLine(rc.Diagnostic))
		} else {
			p("<%s>: %s", rc.Final, oneLine(rc.Diagnostic))
		}
	}
	p("")
}

func (r Report) writeStatus(p func(string, ...any)) {
	p("Content-Type: message/delivery-status")
	p("")
	p("Reporting-MTA: dns; %s", r.ReportingMTA)
	if r.EnvID != "" {
		p("Original-Envelope-Id: %s", oneLine(r.EnvID))
	}
	if !r.Arrival.IsZero() {
		p("Arrival-Date: %s", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		p("")
		if rc.Original != "" {
			p("Original-Recipient: %s", addrType(rc.Original))
		}
		p("Final-Recipient: rfc822; %s", rc.Final)
		p("Action: %s", rc.Action)
		p("Status: %s", rc.Status)
		if rc.RemoteMTA != "" {
			p("Remote-MTA: dns; %s", rc.RemoteMTA)
		}
		if rc.Diagnostic != "" {
			typ := "smtp"
			if rc.RemoteMTA == "" {
				typ = "x-tern" // our own reason, not a peer's reply
			}
			p("Diagnostic-Code: %s; %s", typ, oneLine(rc.Diagnostic))
		}
		if !rc.LastAttempt.IsZero() {
			p("Last-Attempt-Date: %s", rc.LastAttempt.Format(time.RFC1123Z))
		}
	}
	p("")
}
