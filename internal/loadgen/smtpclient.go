package loadgen

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// smtpClient is a minimal RFC 5321 client: one command, one reply, no
// pipelining (like most real senders and smtp-source), so latency per
// command is what the server costs.
type smtpClient struct {
	*conn
	ext  map[string]string // EHLO keywords (upper case) -> parameters
	lmtp bool              // RFC 2033: LHLO, and one reply per recipient after DATA
}

// parseSMTPLine splits one reply line "250-PIPELINING" into code 250,
// more=true (a '-' continuation follows) and text "PIPELINING".
// RFC 5321 §4.2: three digits, then '-' or ' ' (or nothing), then text.
func parseSMTPLine(line []byte) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("short SMTP reply %q", line)
	}
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false, "", fmt.Errorf("bad SMTP reply code in %q", line)
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 {
		return 0, false, "", fmt.Errorf("bad SMTP reply code in %q", line)
	}
	if len(line) > 3 {
		switch line[3] {
		case '-':
			more = true
		case ' ':
		default:
			return 0, false, "", fmt.Errorf("bad SMTP reply separator in %q", line)
		}
		text = string(line[4:])
	}
	return code, more, text, nil
}

// reply reads a complete (possibly multi-line) reply. Every line must carry
// the same code. The text lines are joined with "\n".
func (c *smtpClient) reply() (int, string, error) {
	var text strings.Builder
	first := 0
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, "", &opError{Op: "read", Err: err}
		}
		code, more, t, err := parseSMTPLine(line)
		if err != nil {
			return 0, "", &opError{Op: "read", Err: err}
		}
		if first == 0 {
			first = code
		} else if code != first {
			return 0, "", &opError{Op: "read", Err: fmt.Errorf("reply code changed from %d to %d within one reply", first, code)}
		}
		if text.Len() > 0 {
			text.WriteByte('\n')
		}
		text.WriteString(t)
		if !more {
			return code, text.String(), nil
		}
	}
}

// cmd sends line and wants a reply with code want (a leading digit when
// want < 10: 2 means any 2xx). The returned error is a *replyError named
// by verb otherwise.
func (c *smtpClient) cmd(verb string, want int, line string) (string, error) {
	if err := c.send(line); err != nil {
		return "", &opError{Op: "write", Err: err}
	}
	return c.expect(verb, want)
}

func (c *smtpClient) expect(verb string, want int) (string, error) {
	c.deadline()
	code, text, err := c.reply()
	if err != nil {
		return "", err
	}
	if code != want && !(want < 10 && code/100 == want) {
		return text, &replyError{Cmd: verb, Code: fmt.Sprint(code), Text: text}
	}
	return text, nil
}

// dialSMTP connects, reads the greeting, says EHLO (or LHLO), and does
// STARTTLS and AUTH PLAIN when asked.
func dialSMTP(ctx context.Context, o DialOpts, helo, auth string, lmtp bool) (*smtpClient, error) {
	cn, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	c := &smtpClient{conn: cn, lmtp: lmtp}
	if _, err := c.expect("greeting", 220); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.hello(helo); err != nil {
		c.Close()
		return nil, err
	}
	if o.TLS == TLSStart {
		if _, err := c.cmd("STARTTLS", 220, "STARTTLS"); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.startTLS(ctx, o); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.hello(helo); err != nil {
			c.Close()
			return nil, err
		}
	}
	if auth != "" {
		user, pass, _ := strings.Cut(auth, ":")
		// RFC 4616: authzid NUL authcid NUL passwd; sent as an initial
		// response (RFC 4954 §4) to save a round trip.
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
		if _, err := c.cmd("AUTH", 235, "AUTH PLAIN "+ir); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *smtpClient) hello(helo string) error {
	verb := "EHLO"
	if c.lmtp {
		verb = "LHLO"
	}
	text, err := c.cmd(verb, 250, verb+" "+helo)
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	for i, l := range strings.Split(text, "\n") {
		if i == 0 {
			continue // the greeting line, not an extension
		}
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// send one message. body must be CRLF-terminated lines already dot-stuffed
// (see dotStuff). For LMTP the error is the first recipient's refusal.
func (c *smtpClient) sendMail(from string, to []string, body []byte) error {
	if _, err := c.cmd("MAIL", 250, "MAIL FROM:<"+from+">"); err != nil {
		return err
	}
	for _, r := range to {
		if _, err := c.cmd("RCPT", 2, "RCPT TO:<"+r+">"); err != nil {
			return err
		}
	}
	if _, err := c.cmd("DATA", 354, "DATA"); err != nil {
		return err
	}
	c.deadline()
	c.w.Write(body)
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		return &opError{Op: "write", Err: err}
	}
	n := 1
	if c.lmtp {
		n = len(to) // RFC 2033 §4.2: one reply per accepted recipient
	}
	var first error
	for range n {
		// Only 250 after the final dot counts as delivered.
		if _, err := c.expect("DATA-end", 250); err != nil && first == nil {
			first = err
			var oe *opError
			if errors.As(err, &oe) {
				return err
			}
		}
	}
	return first
}

func (c *smtpClient) quit() {
	c.cmd("QUIT", 221, "QUIT")
	c.Close()
}

// dotStuff converts msg to CRLF line endings and doubles leading dots
// (RFC 5321 §4.5.2), ending with CRLF so that ".\r\n" can follow.
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(msg) + len(msg)/50 + 2)
	for len(msg) > 0 {
		line := msg
		i := bytes.IndexByte(msg, '\n')
		if i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// makeMessage builds a plausible text message of about size bytes, with CRLF
// line endings and no line starting with '.'.
func makeMessage(size int, from, to, id string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: ternload %s\r\nMessage-ID: <%s@ternload.test>\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		from, to, id, id)
	const line = "The quick brown fox jumps over the lazy dog; benchmark filler text here.\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if rest := size - b.Len(); rest > 2 {
		b.WriteString(strings.Repeat("x", rest-2))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
