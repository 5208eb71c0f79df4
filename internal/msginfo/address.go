package msginfo

import (
	"strings"
)

// Placeholders for the parts of a broken address, as other IMAP servers
// show them: a nil host would read as a group start (RFC 3501 §7.4.2).
const (
	missingMailbox = "MISSING_MAILBOX"
	missingDomain  = "MISSING_DOMAIN"
)

// maxAddresses caps one address list; the rest is dropped.
const maxAddresses = 10_000

// envelope builds the IMAP ENVELOPE of a header (RFC 3501 §7.4.2): text
// fields raw and unfolded, address lists parsed, and Sender and Reply-To
// defaulting to From.
func envelope(h header) Envelope {
	e := Envelope{
		Date:      h.get("date"),
		Subject:   h.get("subject"),
		InReplyTo: h.get("in-reply-to"),
		MessageID: h.get("message-id"),
		From:      parseAddressList(h.get("from")),
		Sender:    parseAddressList(h.get("sender")),
		ReplyTo:   parseAddressList(h.get("reply-to")),
		To:        parseAddressList(h.get("to")),
		Cc:        parseAddressList(h.get("cc")),
		Bcc:       parseAddressList(h.get("bcc")),
	}
	if len(e.Sender) == 0 {
		e.Sender = e.From
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = e.From
	}
	return e
}

type tokKind uint8

const (
	tAtom    tokKind = iota // atom or dot-atom, or any other run of text
	tQuoted                 // quoted string, unescaped
	tComment                // comment, unescaped, without parentheses
	tLiteral                // domain literal, with its brackets
	tSpecial                // one of < > @ , ; : ) ]
)

type token struct {
	kind tokKind
	s    string
}

// tokenize splits an address list into RFC 5322 §3.2 lexical tokens,
// leniently: unterminated quotes, comments and literals run to the end.
func tokenize(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '"':
			var v string
			v, i = readQuoted(s, i+1)
			toks = append(toks, token{tQuoted, v})
		case c == '(':
			var v string
			v, i = readComment(s, i+1)
			toks = append(toks, token{tComment, v})
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s) - i - 1
			}
			toks = append(toks, token{tLiteral, s[i : i+j+1]})
			i += j + 1
		case strings.IndexByte("<>@,;:)]", c) >= 0:
			toks = append(toks, token{tSpecial, s[i : i+1]})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n\"([<>@,;:)]", s[j]) < 0 {
				j++
			}
			toks = append(toks, token{tAtom, s[i:j]})
			i = j
		}
	}
	return toks
}

// readComment reads a possibly nested comment starting after its "(".
func readComment(s string, i int) (string, int) {
	var b strings.Builder
	depth := 1
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			c = s[i]
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return b.String(), i + 1
			}
		}
		b.WriteByte(c)
	}
	return b.String(), i
}

// addrItem is one mailbox being parsed.
type addrItem struct {
	words   []string // display name, or a local part without "@"
	comment string
	addr    *Address // set once an addr-spec or angle-addr is read
}

// parseAddressList parses an RFC 5322 §3.4 address list leniently: groups
// become a start and an end entry, display names are decoded from
// encoded-words (RFC 2047), missing commas and stray tokens are tolerated,
// and an address without "@" gets placeholder parts.
func parseAddressList(s string) []Address {
	toks := tokenize(s)
	var out []Address
	var it addrItem
	inGroup := false
	flush := func() {
		if a, ok := it.finish(); ok && len(out) < maxAddresses {
			out = append(out, a)
		}
		it = addrItem{}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == tComment:
			if it.comment == "" {
				it.comment = t.s
			}
		case t.kind == tSpecial && t.s == ",":
			flush()
		case t.kind == tSpecial && t.s == ";":
			flush()
			if inGroup {
				out = append(out, Address{})
				inGroup = false
			}
		case t.kind == tSpecial && t.s == ":":
			if !inGroup && it.addr == nil {
				name := decodePhrase(it.words)
				if name == "" {
					name = missingMailbox // "" would read as a group end
				}
				out = append(out, Address{Mailbox: name})
				it = addrItem{}
				inGroup = true
			}
		case t.kind == tSpecial && t.s == "<":
			if it.addr != nil {
				flush()
			}
			i = it.angle(toks, i+1)
		case t.kind == tSpecial && t.s == "@":
			i = it.addrSpec(toks, i+1)
		case t.kind == tSpecial:
			// a stray ">", ")" or "]"
		default:
			if it.addr != nil {
				flush() // a missing comma
			}
			it.words = append(it.words, t.s)
		}
	}
	flush()
	if inGroup {
		out = append(out, Address{})
	}
	return out
}

// angle reads an angle-addr's content from toks[i:] up to ">" and returns
// the index of its last token. A source route ("@a,@b:") is dropped (RFC
// 5322 §4.4). A missing ">" ends the address at the next "<", ";" or ","
// (outside a route), which also keeps parsing linear.
func (it *addrItem) angle(toks []token, i int) int {
	route := i < len(toks) && toks[i].kind == tSpecial && toks[i].s == "@"
	j := i
	for ; j < len(toks); j++ {
		if t := toks[j]; t.kind == tSpecial && (t.s == ">" || t.s == "<" || t.s == ";" || t.s == "," && !route) {
			break
		}
		if toks[j].kind == tSpecial && toks[j].s == ":" {
			route = false
		}
	}
	inner := toks[i:j]
	if j >= len(toks) || toks[j].s != ">" {
		j-- // not consumed: the caller's loop reads it next
	}
	for k := len(inner) - 1; k >= 0; k-- {
		if inner[k].kind == tSpecial && inner[k].s == ":" {
			inner = inner[k+1:]
			break
		}
	}
	var local, domain strings.Builder
	at := false
	for _, t := range inner {
		switch {
		case t.kind == tSpecial && t.s == "@":
			at = true
		case t.kind == tComment, t.kind == tSpecial:
		case at:
			domain.WriteString(t.s)
		default:
			local.WriteString(t.s)
		}
	}
	a := &Address{Mailbox: local.String(), Host: domain.String()}
	if a.Mailbox == "" && a.Host == "" {
		a = &Address{} // "<>": no address; finish drops it
	}
	it.addr = a
	return j
}

// addrSpec reads the domain of a bare addr-spec whose local part is the
// last word read, from toks[i:], and returns the index of its last token.
func (it *addrItem) addrSpec(toks []token, i int) int {
	local := ""
	if n := len(it.words); n > 0 {
		local, it.words = it.words[n-1], it.words[:n-1]
	}
	domain := ""
	if i < len(toks) && (toks[i].kind == tAtom || toks[i].kind == tLiteral) {
		domain = toks[i].s
	} else {
		i--
	}
	if it.addr == nil {
		it.addr = &Address{Mailbox: local, Host: domain}
	}
	return i
}

// finish returns the mailbox read, if any.
func (it *addrItem) finish() (Address, bool) {
	name := decodePhrase(it.words)
	if it.addr == nil {
		switch len(it.words) {
		case 0:
			return Address{}, false
		case 1:
			// A local part alone, like "undisclosed-recipients".
			return Address{Mailbox: decodeText(it.words[0]), Host: missingDomain}, true
		default:
			return Address{Name: name, Mailbox: missingMailbox, Host: missingDomain}, true
		}
	}
	a := *it.addr
	if a.Mailbox == "" && a.Host == "" {
		return Address{}, false
	}
	if a.Mailbox == "" {
		a.Mailbox = missingMailbox
	}
	if a.Host == "" {
		a.Host = missingDomain
	}
	a.Mailbox, a.Host = validUTF8(a.Mailbox), validUTF8(a.Host)
	if name == "" && it.comment != "" {
		// "user@host (Full Name)", the old style of RFC 822.
		name = decodeText(it.comment)
	}
	a.Name = name
	return a, true
}

// decodePhrase joins display-name words and decodes encoded-words.
func decodePhrase(words []string) string {
	return decodeText(strings.Join(words, " "))
}
