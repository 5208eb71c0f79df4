package relay

// A small SMTP client for relaying (RFC 5321). go-smtp's client greets
// with "localhost" before STARTTLS and has no way to say EHLO with our
// name and then upgrade, reads replies without bound and does not
// pipeline, so the relay speaks SMTP itself over net/textproto.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// maxReply bounds what a peer may send us in answer to one command
// (greeting and TLS handshake included), so a hostile peer cannot make us
// buffer without end.
const maxReply = 256 << 10

// Reply is an SMTP reply.
type Reply struct {
	Code     int
	Enhanced string // "5.1.1" or "" when the peer sent none (RFC 3463)
	Text     string // the text, lines joined by a space
}

func (r Reply) String() string {
	if r.Enhanced != "" {
		return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

// Temporary and Permanent classify a reply (RFC 5321 §4.2.1).
func (r Reply) Temporary() bool { return r.Code/100 == 4 }
func (r Reply) Permanent() bool { return r.Code/100 == 5 }

// status is the enhanced code to report, derived from the basic code
// when the peer sent none.
func (r Reply) status() string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	return fmt.Sprintf("%d.0.0", r.Code/100)
}

// ReplyError is a reply that refused a command.
type ReplyError struct {
	Cmd string
	Reply
}

func (e *ReplyError) Error() string { return e.Cmd + ": " + e.Reply.String() }

// timeouts per stage (RFC 5321 §4.5.3.2).
type timeouts struct {
	command time.Duration // greeting, EHLO, MAIL, RCPT, DATA, RSET, QUIT
	data    time.Duration // sending the body and waiting for the final reply
}

// client is one SMTP connection.
type client struct {
	conn       net.Conn
	lim        *limitedConn
	r          *textproto.Reader
	w          *bufio.Writer
	ext        map[string]string
	tlsVersion string // "TLS 1.3" once STARTTLS succeeded
	verified   string // the host name the certificate was verified for, if any
	to         timeouts
	peer       string // host name, for messages
	local      string // our EHLO name
}

// limitedConn counts bytes read since the last write: a reply may not
// exceed maxReply.
type limitedConn struct {
	net.Conn
	n int
}

var errReplyTooLong = errors.New("reply too long")

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.n >= maxReply {
		return 0, errReplyTooLong
	}
	if len(p) > maxReply-c.n {
		p = p[:maxReply-c.n]
	}
	n, err := c.Conn.Read(p)
	c.n += n
	return n, err
}

func (c *limitedConn) Write(p []byte) (int, error) {
	c.n = 0
	return c.Conn.Write(p)
}

// newClient reads the greeting and says EHLO (HELO if refused).
func newClient(ctx context.Context, conn net.Conn, peer, local string, to timeouts) (*client, error) {
	c := &client{conn: conn, peer: peer, local: local, to: to}
	c.setConn(conn)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	greet, err := c.read(c.to.command)
	if err != nil {
		return nil, err
	}
	if greet.Code != 220 {
		return nil, &ReplyError{Cmd: "greeting", Reply: greet}
	}
	if err := c.hello(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *client) setConn(conn net.Conn) {
	c.conn = conn
	c.lim = &limitedConn{Conn: conn}
	c.r = textproto.NewReader(bufio.NewReader(c.lim))
	c.w = bufio.NewWriter(c.lim)
}

func (c *client) hello() error {
	rep, err := c.cmd(c.to.command, "EHLO %s", c.local)
	if err != nil {
		return err
	}
	if rep.Code == 250 {
		c.ext = map[string]string{}
		lines := strings.Split(rep.Text, "\n")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
			c.ext[strings.ToUpper(k)] = v
		}
		return nil
	}
	// RFC 5321 §3.2: fall back to HELO when EHLO is not understood.
	c.ext = map[string]string{}
	if rep2, err := c.cmd(c.to.command, "HELO %s", c.local); err != nil {
		return err
	} else if rep2.Code != 250 {
		return &ReplyError{Cmd: "EHLO", Reply: rep}
	}
	return nil
}

func (c *client) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// startTLS upgrades the connection (RFC 3207) and says EHLO again.
func (c *client) startTLS(ctx context.Context, cfg *tls.Config) error {
	rep, err := c.cmd(c.to.command, "STARTTLS")
	if err != nil {
		return err
	}
	if rep.Code != 220 {
		return &ReplyError{Cmd: "STARTTLS", Reply: rep}
	}
	tc := tls.Client(c.lim, cfg)
	hctx, cancel := context.WithTimeout(ctx, c.to.command)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.setConn(tc)
	c.tlsVersion = tls.VersionName(tc.ConnectionState().Version)
	return c.hello()
}

// cmd sends one command and reads its reply.
func (c *client) cmd(timeout time.Duration, format string, args ...any) (Reply, error) {
	c.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c.w, format+"\r\n", args...); err != nil {
		return Reply{}, err
	}
	if err := c.w.Flush(); err != nil {
		return Reply{}, err
	}
	return c.read(timeout)
}

// read reads one reply, multi-line included.
func (c *client) read(timeout time.Duration) (Reply, error) {
	c.conn.SetDeadline(time.Now().Add(timeout))
	code, msg, err := c.r.ReadResponse(0)
	if err != nil {
		var pe textproto.ProtocolError
		if errors.As(err, &pe) {
			return Reply{}, fmt.Errorf("bad reply from %s: %v", c.peer, err)
		}
		return Reply{}, err
	}
	if code < 200 || code > 599 {
		return Reply{}, fmt.Errorf("bad reply code %d from %s", code, c.peer)
	}
	rep := Reply{Code: code, Text: msg}
	// The enhanced code leads the first line (RFC 2034 §4).
	first, rest, _ := strings.Cut(msg, "\n")
	if enh, text, ok := strings.Cut(first, " "); ok && validEnhanced(enh, code) {
		rep.Enhanced = enh
		rep.Text = text
		if rest != "" {
			rep.Text += "\n" + rest
		}
	}
	return rep, nil
}

// oneLine is the reply text as one line, for logs, events and DSNs.
func (r Reply) oneLine() Reply {
	r.Text = strings.Join(strings.Fields(strings.ReplaceAll(r.Text, "\n", " ")), " ")
	return r
}

func validEnhanced(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

// envelope is one transaction.
type envelope struct {
	from  string
	rcpts []rcpt
	size  int64
	utf8  bool   // SMTPUTF8 needed (RFC 6531)
	ret   string // RFC 3461
	envID string
	// prefix is header fields sent before the stored message
	// (DKIM-Signature); size counts them.
	prefix []byte
}

type rcpt struct{ addr, notify, orcpt string }

// send runs MAIL, RCPT for each recipient and, if any was accepted, DATA.
// It returns one reply per recipient: the RCPT refusal, or the reply to
// the end of data. An error means the transaction failed as a whole
// (connection lost, MAIL refused): the reply, if any, is in a ReplyError.
// With PIPELINING (RFC 2920) MAIL and every RCPT go in one write.
func (c *client) send(ctx context.Context, env envelope, body io.Reader) ([]Reply, error) {
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()
	lines := c.envelopeLines(env)
	pipelined := c.has("PIPELINING")
	replies := make([]Reply, 0, len(lines))
	c.conn.SetDeadline(time.Now().Add(c.to.command))
	for i, l := range lines {
		if _, err := c.w.WriteString(l + "\r\n"); err != nil {
			return nil, err
		}
		if pipelined && i < len(lines)-1 {
			continue
		}
		if err := c.w.Flush(); err != nil {
			return nil, err
		}
		for len(replies) <= i {
			rep, err := c.read(c.to.command)
			if err != nil {
				return nil, err
			}
			replies = append(replies, rep)
		}
		if i == 0 && replies[0].Code != 250 {
			return nil, &ReplyError{Cmd: "MAIL", Reply: replies[0]}
		}
	}
	if replies[0].Code != 250 { // pipelined: the RCPT replies are read too
		return nil, &ReplyError{Cmd: "MAIL", Reply: replies[0]}
	}
	out := replies[1:]
	accepted := 0
	for _, r := range out {
		if r.Code/100 == 2 {
			accepted++
		}
	}
	if accepted == 0 {
		c.reset()
		return out, nil
	}
	rep, err := c.cmd(c.to.command, "DATA")
	if err != nil {
		return nil, err
	}
	if rep.Code != 354 {
		return nil, &ReplyError{Cmd: "DATA", Reply: rep}
	}
	c.conn.SetDeadline(time.Now().Add(c.to.data))
	dw := textproto.NewWriter(c.w).DotWriter()
	if _, err := io.Copy(dw, body); err != nil {
		return nil, fmt.Errorf("sending message: %w", err)
	}
	if err := dw.Close(); err != nil { // writes the final "." and flushes
		return nil, fmt.Errorf("sending message: %w", err)
	}
	final, err := c.read(c.to.data)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Code/100 == 2 {
			out[i] = final
		}
	}
	return out, nil
}

// envelopeLines are the MAIL command and one RCPT per recipient, with
// the parameters the peer's extensions allow.
func (c *client) envelopeLines(env envelope) []string {
	mail := "MAIL FROM:<" + env.from + ">"
	if c.has("8BITMIME") {
		mail += " BODY=8BITMIME"
	}
	if c.has("SIZE") && env.size > 0 {
		mail += " SIZE=" + strconv.FormatInt(env.size, 10)
	}
	if env.utf8 {
		mail += " SMTPUTF8"
	}
	dsn := c.has("DSN")
	if dsn && env.ret != "" {
		mail += " RET=" + env.ret
	}
	if dsn && env.envID != "" {
		mail += " ENVID=" + xtext(env.envID)
	}
	lines := []string{mail}
	for _, r := range env.rcpts {
		l := "RCPT TO:<" + r.addr + ">"
		if dsn && r.notify != "" {
			l += " NOTIFY=" + r.notify
		}
		if dsn && r.orcpt != "" {
			typ, addr, ok := strings.Cut(r.orcpt, ";")
			if !ok {
				typ, addr = "rfc822", r.orcpt
			}
			l += " ORCPT=" + strings.TrimSpace(typ) + ";" + xtext(strings.TrimSpace(addr))
		}
		lines = append(lines, l)
	}
	return lines
}

// reset ends a transaction so the connection can carry another.
func (c *client) reset() error {
	rep, err := c.cmd(c.to.command, "RSET")
	if err == nil && rep.Code != 250 {
		err = &ReplyError{Cmd: "RSET", Reply: rep}
	}
	return err
}

// quit says goodbye and closes, without waiting long for the peer.
func (c *client) quit() {
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c.w, "QUIT\r\n")
	if c.w.Flush() == nil {
		c.r.ReadResponse(0)
	}
	c.conn.Close()
}

// xtext encodes a DSN parameter (RFC 3461 §4).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < 33 || ch > 126 || ch == '+' || ch == '=' {
			fmt.Fprintf(&b, "+%02X", ch)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}
