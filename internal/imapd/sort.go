package imapd

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
)

// sortKeys is what SORT and THREAD (RFC 5256) need of one message.
type sortKeys struct {
	i          int // index in sel.msgs
	arrival    time.Time
	date       time.Time // sent date, arrival when missing
	size       int64
	from, to   string
	cc         string
	subject    string // base subject, upper case
	isReplyFwd bool
	messageID  string
	parentRefs []string // References, else In-Reply-To
}

type sortCrit struct {
	key     string
	reverse bool
}

// cmdSort does SORT and UID SORT.
func (c *conn) cmdSort(tag string, p *parser) error {
	uidCmd := c.cmd == "UID SORT"
	var crits []sortCrit
	err := p.sp()
	if err == nil {
		rev := false
		err = p.list(func() error {
			a, err := p.atom()
			if err != nil {
				return err
			}
			a = strings.ToUpper(a)
			switch a {
			case "REVERSE":
				if rev {
					return p.errorf("REVERSE REVERSE")
				}
				rev = true
				return nil
			case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO":
				crits = append(crits, sortCrit{a, rev})
				rev = false
				return nil
			}
			return p.errorf("unknown sort criterion %s", a)
		})
		if err == nil && (rev || len(crits) == 0) {
			err = p.errorf("bad sort criteria")
		}
	}
	key, err := c.charsetAndKeys(p, err)
	if err != nil {
		return err
	}
	keys, err := c.searchSortKeys(key, false)
	if err != nil {
		return err
	}
	slices.SortStableFunc(keys, func(a, b sortKeys) int {
		for _, cr := range crits {
			if r := compareBy(cr.key, &a, &b); r != 0 {
				if cr.reverse {
					return -r
				}
				return r
			}
		}
		return cmp.Compare(a.i, b.i)
	})
	var sb strings.Builder
	sb.WriteString("* SORT")
	for _, k := range keys {
		sb.WriteString(" " + c.number(k.i, uidCmd))
	}
	c.writeLine(sb.String())
	return c.okUpdates(tag, "", c.cmd+" completed", uidCmd)
}

func (c *conn) number(i int, uid bool) string {
	if uid {
		return uitoa(c.sel.msgs[i].uid)
	}
	return uitoa(uint32(i + 1))
}

// charsetAndKeys reads "SP charset SP search-keys" shared by SORT and
// THREAD.
func (c *conn) charsetAndKeys(p *parser, err error) (*searchKey, error) {
	var cs string
	if err == nil {
		err = p.sp()
	}
	if err == nil {
		cs, err = p.astring()
	}
	if err == nil {
		err = p.sp()
	}
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
		return nil, nof("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset")
	}
	key, err := parseSearchKeys(p, true)
	if err == nil {
		err = p.end()
	}
	if err == nil {
		err = c.sync(false, false)
	}
	return key, err
}

func compareBy(key string, a, b *sortKeys) int {
	switch key {
	case "ARRIVAL":
		return a.arrival.Compare(b.arrival)
	case "DATE":
		return a.date.Compare(b.date)
	case "SIZE":
		return cmp.Compare(a.size, b.size)
	case "FROM":
		return cmp.Compare(a.from, b.from)
	case "TO":
		return cmp.Compare(a.to, b.to)
	case "CC":
		return cmp.Compare(a.cc, b.cc)
	case "SUBJECT":
		return cmp.Compare(a.subject, b.subject)
	}
	return 0
}

// searchSortKeys evaluates the search and collects the sort keys of the
// matches, a batch of messages at a time. refs reads References from the
// stored header (THREAD=REFERENCES).
func (c *conn) searchSortKeys(key *searchKey, refs bool) ([]sortKeys, error) {
	idx, err := c.searchIndexes(key)
	if err != nil {
		return nil, err
	}
	var out []sortKeys
	for start := 0; start < len(idx); start += fetchBatch {
		batch := idx[start:min(start+fetchBatch, len(idx))]
		msgs, err := c.srv.st.GetMessages(c.ctx, c.sel.mb.ID, c.uidsOf(batch))
		if err != nil {
			return nil, err
		}
		byUID := make(map[uint32]*store.Message, len(msgs))
		for k := range msgs {
			byUID[msgs[k].UID] = &msgs[k]
		}
		for _, i := range batch {
			m := byUID[c.sel.msgs[i].uid]
			if m == nil {
				continue
			}
			k, err := c.keysOf(i, m, refs)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		}
	}
	return out, nil
}

func (c *conn) keysOf(i int, m *store.Message, refs bool) (sortKeys, error) {
	info := m.Info
	if info == nil {
		info = &msginfo.Info{}
	}
	env := &info.Envelope
	k := sortKeys{i: i, arrival: m.InternalDate, date: info.Date, size: m.Size,
		from: firstMailbox(env.From), to: firstMailbox(env.To), cc: firstMailbox(env.Cc),
		messageID: strings.TrimSpace(env.MessageID)}
	if k.date.IsZero() {
		k.date = m.InternalDate
	}
	k.subject, k.isReplyFwd = baseSubject(decodeWords(env.Subject))
	if refs {
		sm := &searchMsg{c: c, i: i, st: &c.sel.msgs[i], msg: m}
		defer sm.close()
		hdr, err := sm.readHeader()
		if err != nil {
			return k, err
		}
		k.parentRefs = msgIDs(unfold(string(msginfo.HeaderFields(hdr, []string{"References"}, false))))
		if len(k.parentRefs) == 0 {
			if ids := msgIDs(env.InReplyTo); len(ids) > 0 {
				k.parentRefs = ids[:1]
			}
		}
	}
	return k, nil
}

func firstMailbox(l []msginfo.Address) string {
	for _, a := range l {
		if a.Host != "" || a.Mailbox != "" {
			return strings.ToUpper(a.Mailbox)
		}
	}
	return ""
}

var msgIDRe = regexp.MustCompile(`<[^<>\s]+>`)

func msgIDs(s string) []string { return msgIDRe.FindAllString(s, 200) }

var (
	subjTrailer = regexp.MustCompile(`(?i)(\s|\(fwd\))+$`)
	subjLeader  = regexp.MustCompile(`(?i)^(\s*(\[[^\[\]]*\]\s*)*(re|fwd?)\s*(\[[^\[\]]*\])?:\s*|\s*\[[^\[\]]*\]\s*)`)
	subjFwd     = regexp.MustCompile(`(?i)^\[fwd:(.*)\]$`)
)

// baseSubject extracts the base subject (RFC 5256 §2.1) in upper case,
// and whether it was a reply or forward.
func baseSubject(s string) (string, bool) {
	s = strings.Join(strings.Fields(s), " ")
	reply := false
	for {
		prev := s
		s = subjTrailer.ReplaceAllString(s, "")
		for {
			loc := subjLeader.FindStringIndex(s)
			if loc == nil || loc[1] == 0 || (loc[1] == len(s) && strings.HasPrefix(strings.TrimSpace(s), "[")) {
				break
			}
			if strings.Contains(s[:loc[1]], ":") {
				reply = true
			}
			s = s[loc[1]:]
		}
		if m := subjFwd.FindStringSubmatch(s); m != nil {
			s, reply = m[1], true
		}
		if s == prev {
			break
		}
	}
	return strings.ToUpper(strings.TrimSpace(s)), reply
}
