package imapd

import (
	"strconv"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// searchKey is one node of a parsed SEARCH program (RFC 9051 §6.4.4).
type searchKey struct {
	op   string // upper-case key name; "AND" for a parenthesised list
	kids []*searchKey
	set  seqSet
	str  string
	hdr  string
	date time.Time
	n    uint64
}

// level is how much of a message the key needs: 0 the session's state,
// 1 the stored metadata, 2 the stored body.
func (k *searchKey) level() int {
	lvl := 0
	switch k.op {
	case "LARGER", "SMALLER", "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE",
		"FROM", "TO", "CC", "BCC", "SUBJECT":
		lvl = 1
	case "HEADER", "BODY", "TEXT":
		lvl = 2
	}
	for _, kid := range k.kids {
		lvl = max(lvl, kid.level())
	}
	return lvl
}

func (k *searchKey) usesModSeq() bool {
	if k.op == "MODSEQ" {
		return true
	}
	for _, kid := range k.kids {
		if kid.usesModSeq() {
			return true
		}
	}
	return false
}

// searchOpts are ESEARCH return options (RFC 4731, RFC 5182).
type searchOpts struct {
	extended                   bool // RETURN given, or IMAP4rev2
	min, max, all, count, save bool
}

func (c *conn) cmdSearch(tag string, p *parser) error {
	uidCmd := c.cmd == "UID SEARCH"
	if err := p.sp(); err != nil {
		return err
	}
	var o searchOpts
	if p.takeWord("RETURN ") {
		o.extended = true
		err := p.list(func() error {
			a, err := p.atom()
			switch strings.ToUpper(a) {
			case "MIN":
				o.min = true
			case "MAX":
				o.max = true
			case "ALL":
				o.all = true
			case "COUNT":
				o.count = true
			case "SAVE":
				o.save = true
			default:
				if err == nil {
					err = p.errorf("unknown return option")
				}
			}
			return err
		})
		if err == nil {
			err = p.sp()
		}
		if err != nil {
			return err
		}
		if !o.min && !o.max && !o.count && !o.save {
			o.all = true
		}
	} else if c.rev2 {
		o.extended, o.all = true, true
	}
	if p.takeWord("CHARSET ") {
		cs, err := p.astring()
		if err == nil {
			err = p.sp()
		}
		if err != nil {
			return err
		}
		if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
			return nof("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset")
		}
	}
	key, err := parseSearchKeys(p, true)
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if key.usesModSeq() {
		c.condstore = true
	}
	if err := c.sync(false, false); err != nil {
		return err
	}
	idx, err := c.searchIndexes(key)
	if err != nil {
		return err
	}
	c.writeSearchResult(tag, idx, uidCmd, o, key.usesModSeq())
	return c.okUpdates(tag, "", c.cmd+" completed", uidCmd)
}

func (c *conn) writeSearchResult(tag string, idx []int, uidCmd bool, o searchOpts, modseq bool) {
	nums := make([]uint32, len(idx))
	var highest uint64
	for k, i := range idx {
		nums[k] = uint32(i + 1)
		if uidCmd {
			nums[k] = c.sel.msgs[i].uid
		}
		highest = max(highest, c.sel.msgs[i].modseq)
	}
	if o.save {
		c.saved = c.uidsOf(idx)
	}
	if !o.extended {
		var b strings.Builder
		b.WriteString("* SEARCH")
		for _, n := range nums {
			b.WriteString(" " + uitoa(n))
		}
		if modseq && len(nums) > 0 {
			b.WriteString(" (MODSEQ " + strconv.FormatUint(highest, 10) + ")")
		}
		c.writeLine(b.String())
		return
	}
	if o.save && !o.min && !o.max && !o.all && !o.count {
		return // RFC 5182 §2.4: SAVE alone returns nothing
	}
	line := "* ESEARCH (TAG " + quote(tag, false) + ")"
	if uidCmd {
		line += " UID"
	}
	if len(nums) > 0 {
		if o.min {
			line += " MIN " + uitoa(nums[0])
		}
		if o.max {
			line += " MAX " + uitoa(nums[len(nums)-1])
		}
		if o.all {
			line += " ALL " + uidSetString(nums)
		}
	}
	if o.count {
		line += " COUNT " + strconv.Itoa(len(nums))
	}
	if modseq && len(nums) > 0 {
		line += " MODSEQ " + strconv.FormatUint(highest, 10)
	}
	c.writeLine(line)
}

// parseSearchKeys reads keys up to the end of the line (top) or ")" and
// returns them as one AND node.
func parseSearchKeys(p *parser, top bool) (*searchKey, error) {
	and := &searchKey{op: "AND"}
	for {
		k, err := parseSearchKey(p)
		if err != nil {
			return nil, err
		}
		and.kids = append(and.kids, k)
		if len(and.kids) > 1000 {
			return nil, p.errorf("too many search keys")
		}
		if top && p.eol() || !top && p.peek() == ')' {
			return and, nil
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
}

func parseSearchKey(p *parser) (*searchKey, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errorf("search nested too deeply")
	}
	if p.take('(') {
		k, err := parseSearchKeys(p, false)
		if err != nil {
			return nil, err
		}
		return k, p.expect(')')
	}
	if c := p.peek(); c == '$' || c == '*' || (c >= '0' && c <= '9') {
		set, err := p.seqSet()
		return &searchKey{op: "SEQ", set: set}, err
	}
	a, err := p.atom()
	if err != nil {
		return nil, err
	}
	k := &searchKey{op: strings.ToUpper(a)}
	switch k.op {
	case "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN", "NEW", "OLD", "RECENT",
		"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		return k, nil
	}
	if err := p.sp(); err != nil {
		return nil, err
	}
	switch k.op {
	case "NOT":
		kid, err := parseSearchKey(p)
		k.kids = []*searchKey{kid}
		return k, err
	case "OR":
		a, err := parseSearchKey(p)
		if err != nil {
			return nil, err
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
		b, err := parseSearchKey(p)
		k.kids = []*searchKey{a, b}
		return k, err
	case "UID":
		k.set, err = p.seqSet()
	case "BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO":
		k.str, err = p.astring()
	case "HEADER":
		if k.hdr, err = p.astring(); err == nil {
			if err = p.sp(); err == nil {
				k.str, err = p.astring()
			}
		}
	case "KEYWORD", "UNKEYWORD":
		k.str, err = p.flag()
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		k.date, err = p.date()
	case "LARGER", "SMALLER":
		k.n, err = p.number64()
	case "MODSEQ":
		if p.peek() == '"' {
			// entry-name entry-type-req: per-flag MODSEQs are not kept;
			// the message MODSEQ is an upper bound of them all.
			if _, err = p.string(); err == nil {
				if err = p.sp(); err == nil {
					if _, err = p.atom(); err == nil {
						err = p.sp()
					}
				}
			}
			if err != nil {
				return nil, err
			}
		}
		k.n, err = p.number64()
	default:
		return nil, p.errorf("unknown search key %s", k.op)
	}
	return k, err
}

// searchIndexes evaluates key over the selected mailbox, in batches so
// only fetchBatch messages' metadata are held at once.
func (c *conn) searchIndexes(key *searchKey) ([]int, error) {
	var out []int
	lvl := key.level()
	all := make([]int, len(c.sel.msgs))
	for i := range all {
		all[i] = i
	}
	for start := 0; start < len(all); start += fetchBatch {
		batch := all[start:min(start+fetchBatch, len(all))]
		var byUID map[uint32]*store.Message
		if lvl > 0 {
			msgs, err := c.srv.st.GetMessages(c.ctx, c.sel.mb.ID, c.uidsOf(batch))
			if err != nil {
				return nil, err
			}
			byUID = make(map[uint32]*store.Message, len(msgs))
			for k := range msgs {
				byUID[msgs[k].UID] = &msgs[k]
			}
		}
		for _, i := range batch {
			m := &searchMsg{c: c, i: i, st: &c.sel.msgs[i]}
			if lvl > 0 {
				if m.msg = byUID[m.st.uid]; m.msg == nil {
					continue
				}
			}
			ok, err := m.match(key)
			m.close()
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, i)
			}
		}
	}
	return out, nil
}
