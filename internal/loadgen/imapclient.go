package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// imapClient is a minimal RFC 9051/3501 client: tagged commands, untagged
// responses read and mostly discarded, server literals skipped without
// copying (their size is counted), synchronising literals for APPEND.
type imapClient struct {
	*conn
	tag    int
	caps   map[string]bool
	exists int    // last "* N EXISTS"
	resp   []byte // the current response, literals elided
	lit    int    // literal bytes in the current response
}

// readResp reads one complete response into c.resp: a line, and when it
// ends in a literal "{N}" (RFC 9051 §4.3), the N octets (skipped, counted
// in c.lit) and the rest of the response, repeatedly. The literal marker
// stays in c.resp so that "BODY[] {1234}" is still recognisable.
func (c *imapClient) readResp() ([]byte, error) {
	c.resp, c.lit = c.resp[:0], 0
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, &opError{Op: "read", Err: err}
		}
		c.resp = append(c.resp, line...)
		n, ok := literalSize(line)
		if !ok {
			return c.resp, nil
		}
		if _, err := c.r.Discard(n); err != nil {
			return nil, &opError{Op: "read", Err: err}
		}
		c.lit += n
	}
}

// literalSize reports whether line ends with a literal announcement
// "{N}" (or the non-synchronising "{N+}") and its size.
func literalSize(line []byte) (int, bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	num := bytes.TrimSuffix(line[i+1:len(line)-1], []byte("+"))
	n, err := strconv.Atoi(string(num))
	if err != nil || n < 0 || len(num) == 0 {
		return 0, false
	}
	return n, true
}

// untagged handles what every command can receive: the message count
// (EXISTS, and EXPUNGE of messages other sessions removed, which may
// follow the EXISTS of a SELECT) and capability lists.
func (c *imapClient) untagged(line []byte) {
	rest := line[2:]
	if num, kind, ok := bytes.Cut(rest, []byte(" ")); ok {
		if n, err := strconv.Atoi(string(num)); err == nil {
			switch {
			case bytes.EqualFold(kind, []byte("EXISTS")):
				c.exists = n
				return
			case bytes.EqualFold(kind, []byte("EXPUNGE")):
				c.exists = max(0, c.exists-1)
				return
			}
		}
	}
	c.noteCaps(line)
}

// noteCaps records capabilities from "* CAPABILITY ..." or a
// "[CAPABILITY ...]" response code (RFC 9051 §7.1).
func (c *imapClient) noteCaps(line []byte) {
	s := string(line)
	up := strings.ToUpper(s)
	var list string
	switch {
	case strings.HasPrefix(up, "* CAPABILITY "):
		list = s[len("* CAPABILITY "):]
	case strings.Contains(up, "[CAPABILITY "):
		list = s[strings.Index(up, "[CAPABILITY ")+len("[CAPABILITY "):]
		if j := strings.IndexByte(list, ']'); j >= 0 {
			list = list[:j]
		}
	default:
		return
	}
	c.caps = map[string]bool{}
	for _, f := range strings.Fields(list) {
		c.caps[strings.ToUpper(f)] = true
	}
}

// parseTagged splits a tagged response "a12 OK [APPENDUID 1 5] done" into
// its status ("OK") and the rest.
func parseTagged(line []byte, tag string) (status, text string, ok bool) {
	if len(line) <= len(tag) || string(line[:len(tag)]) != tag || line[len(tag)] != ' ' {
		return "", "", false
	}
	st, rest, _ := strings.Cut(string(line[len(tag)+1:]), " ")
	return strings.ToUpper(st), rest, true
}

func (c *imapClient) nextTag() string {
	c.tag++
	return "a" + strconv.Itoa(c.tag)
}

// do sends "TAG verb args" and reads responses up to the tagged one; each
// untagged response is passed to fn (if not nil) after the built-in
// handling. It returns the tagged text after the status.
func (c *imapClient) do(verb, args string, fn func(line []byte)) (string, error) {
	tag := c.nextTag()
	line := tag + " " + verb
	if args != "" {
		line += " " + args
	}
	if err := c.send(line); err != nil {
		return "", &opError{Op: "write", Err: err}
	}
	return c.waitTagged(verb, tag, fn)
}

func (c *imapClient) waitTagged(verb, tag string, fn func(line []byte)) (string, error) {
	for {
		c.deadline()
		line, err := c.readResp()
		if err != nil {
			return "", err
		}
		if len(line) >= 2 && line[0] == '*' && line[1] == ' ' {
			c.untagged(line)
			if fn != nil {
				fn(line)
			}
			continue
		}
		st, text, ok := parseTagged(line, tag)
		if !ok {
			return "", &opError{Op: "read", Err: fmt.Errorf("%s: unexpected response %.80q", verb, line)}
		}
		c.noteCaps(line)
		if st != "OK" {
			return text, &replyError{Cmd: "IMAP " + verb, Code: st, Text: text}
		}
		return text, nil
	}
}

// waitContinue reads until a "+" continuation request, handling untagged
// responses; a tagged reply instead means the server refused.
func (c *imapClient) waitContinue(verb, tag string) error {
	for {
		c.deadline()
		line, err := c.readResp()
		if err != nil {
			return err
		}
		switch {
		case len(line) >= 1 && line[0] == '+':
			return nil
		case len(line) >= 2 && line[0] == '*':
			c.untagged(line)
		default:
			st, text, _ := parseTagged(line, tag)
			return &replyError{Cmd: "IMAP " + verb, Code: st, Text: text}
		}
	}
}

// dialIMAP connects, reads the greeting and does STARTTLS when asked.
func dialIMAP(ctx context.Context, o DialOpts) (*imapClient, error) {
	cn, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	c := &imapClient{conn: cn}
	cn.deadline()
	line, err := c.readResp()
	if err != nil {
		c.Close()
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("* OK")) {
		c.Close()
		return nil, &replyError{Cmd: "IMAP greeting", Code: "not-OK", Text: string(line)}
	}
	c.noteCaps(line)
	if o.TLS == TLSStart {
		if _, err := c.do("STARTTLS", "", nil); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.startTLS(ctx, o); err != nil {
			c.Close()
			return nil, err
		}
		c.caps = nil // RFC 9051 §6.2.1: capabilities before TLS are void
	}
	return c, nil
}

// quote makes an IMAP quoted string (RFC 9051 §4.3).
func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

func (c *imapClient) login(user, pass string) error {
	_, err := c.do("LOGIN", quote(user)+" "+quote(pass), nil)
	return err
}

// appendMsg APPENDs msg to mailbox with a synchronising literal and returns
// the new UID from APPENDUID (RFC 4315), or 0 when the server gave none.
func (c *imapClient) appendMsg(mailbox string, msg []byte) (uint32, error) {
	tag := c.nextTag()
	if err := c.send(fmt.Sprintf("%s APPEND %s {%d}", tag, quote(mailbox), len(msg))); err != nil {
		return 0, &opError{Op: "write", Err: err}
	}
	if err := c.waitContinue("APPEND", tag); err != nil {
		return 0, err
	}
	c.deadline()
	c.w.Write(msg)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return 0, &opError{Op: "write", Err: err}
	}
	text, err := c.waitTagged("APPEND", tag, nil)
	if err != nil {
		return 0, err
	}
	return appendUID(text), nil
}

// appendUID extracts the UID from "[APPENDUID 38505 3955] ...".
func appendUID(text string) uint32 {
	const code = "[APPENDUID "
	i := indexFold(text, code)
	if i < 0 {
		return 0
	}
	f := strings.Fields(text[i+len(code):])
	if len(f) < 2 {
		return 0
	}
	uid, err := strconv.ParseUint(strings.TrimSuffix(f[1], "]"), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(uid)
}

// indexFold is strings.Index ignoring ASCII case. (Upper-casing text
// first would shift byte offsets where text holds invalid UTF-8.)
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// idle enters IDLE (RFC 2177), waits d, sends DONE and reads the tagged
// reply. The returned duration excludes the wait: it is what the server
// took to enter and leave IDLE.
func (c *imapClient) idle(d time.Duration) (time.Duration, error) {
	t0 := time.Now()
	tag := c.nextTag()
	if err := c.send(tag + " IDLE"); err != nil {
		return 0, &opError{Op: "write", Err: err}
	}
	if err := c.waitContinue("IDLE", tag); err != nil {
		return 0, err
	}
	enter := time.Since(t0)
	time.Sleep(d)
	t1 := time.Now()
	if err := c.send("DONE"); err != nil {
		return 0, &opError{Op: "write", Err: err}
	}
	if _, err := c.waitTagged("IDLE", tag, nil); err != nil {
		return 0, err
	}
	return enter + time.Since(t1), nil
}
