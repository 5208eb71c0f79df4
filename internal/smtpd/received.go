package smtpd

import (
	"bytes"
	"crypto/tls"
	"net/netip"
	"strings"
	"time"
)

// traceInfo is what a Received field says about one message.
type traceInfo struct {
	Helo     string
	IP       netip.Addr
	Hostname string
	TLS      *tls.ConnectionState
	Auth     bool
	UTF8     bool
	ID       string
	For      string // the recipient when there is exactly one
	Time     time.Time
}

// writeTrace writes the trace fields of RFC 5321 §4.4 for tx: Return-Path
// (only when every copy is delivered here: the final delivery adds it,
// a relayed message must not carry one) and Received.
func (s *session) writeTrace(b *bytes.Buffer, tx *transaction, id string) {
	remote := false
	for _, rc := range tx.rcpts {
		remote = remote || len(rc.Remote) > 0
	}
	if !remote {
		b.WriteString("Return-Path: <" + tx.from + ">\r\n")
	}
	ti := traceInfo{
		Helo: tx.helo, IP: s.conn.remote, Hostname: s.srv.cfg.Hostname, TLS: s.tls,
		Auth: s.getAccount() != nil, UTF8: tx.utf8, ID: id, Time: time.Now(),
	}
	if len(tx.rcpts) == 1 {
		ti.For = tx.rcpts[0].Address
	}
	writeReceived(b, ti)
}

// writeReceived writes one Received field (RFC 5321 §4.4, protocol names
// of RFC 3848 and RFC 6531 §3.7.3), folded, with the TLS version and
// cipher in a comment. The HELO name is the client's word: it is reduced
// to characters that cannot break the field.
func writeReceived(b *bytes.Buffer, t traceInfo) {
	helo := sanitize(t.Helo, 255)
	if helo == "" {
		helo = "unknown"
	}
	ip := "unknown"
	if t.IP.IsValid() {
		ip = "[" + t.IP.String() + "]"
		if t.IP.Is6() {
			ip = "[IPv6:" + t.IP.String() + "]"
		}
	}
	proto := "ESMTP"
	if t.UTF8 {
		proto = "UTF8SMTP"
	}
	if t.TLS != nil {
		proto += "S"
	}
	if t.Auth {
		proto += "A"
	}
	b.WriteString("Received: from " + helo + " (" + ip + ")\r\n")
	b.WriteString("\tby " + t.Hostname + " (Tern) with " + proto)
	if t.TLS != nil {
		b.WriteString("\r\n\t(" + strings.ReplaceAll(tls.VersionName(t.TLS.Version), " ", "") +
			" cipher=" + tls.CipherSuiteName(t.TLS.CipherSuite) + ")")
	}
	b.WriteString(" id " + t.ID)
	if t.For != "" {
		b.WriteString("\r\n\tfor <" + t.For + ">")
	}
	b.WriteString(";\r\n\t" + t.Time.Format(time.RFC1123Z) + "\r\n")
}

// sanitize keeps the characters of a domain name or address literal (and
// of an address), dropping anything that could end a comment, a field or
// a line, and truncates to max bytes.
func sanitize(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte(".-_:[]@+=", c) >= 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
