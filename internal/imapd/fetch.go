package imapd

import (
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/store"
)

// fetchItem is one FETCH data item.
type fetchItem struct {
	name string // FLAGS, UID, ENVELOPE, …, "BODY[", "BINARY[", "BINARY.SIZE["
	sec  section
	peek bool
	// partial is <offset.count>; count < 0 means none given.
	partial       bool
	offset, count int64
}

// section is BODY[...]'s argument (RFC 9051 §6.4.5).
type section struct {
	path   []int
	spec   string // "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
	fields []string
}

func (s section) String() string {
	var parts []string
	for _, n := range s.path {
		parts = append(parts, strconv.Itoa(n))
	}
	if s.spec != "" {
		parts = append(parts, s.spec)
	}
	out := strings.Join(parts, ".")
	if len(s.fields) > 0 {
		fs := make([]string, len(s.fields))
		for i, f := range s.fields {
			fs[i] = astring(f, false)
		}
		out += " (" + strings.Join(fs, " ") + ")"
	}
	return out
}

// needsMessage reports whether the item needs more than the session's
// own state (UID, flags, MODSEQ).
func (it fetchItem) needsMessage() bool {
	switch it.name {
	case "FLAGS", "UID", "MODSEQ":
		return false
	}
	return true
}

// setsSeen: fetching the content marks the message read (RFC 3501
// §6.4.5), except with PEEK and RFC822.HEADER.
func (it fetchItem) setsSeen() bool {
	switch it.name {
	case "BODY[", "BINARY[":
		return !it.peek
	case "RFC822", "RFC822.TEXT":
		return true
	}
	return false
}

func parseFetchItems(p *parser) ([]fetchItem, error) {
	for macro, items := range map[string][]string{
		"ALL":  {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"},
		"FAST": {"FLAGS", "INTERNALDATE", "RFC822.SIZE"},
		"FULL": {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"},
	} {
		if p.takeWord(macro) {
			if !p.eol() && p.peek() != ' ' {
				return nil, p.errorf("bad fetch macro")
			}
			out := make([]fetchItem, len(items))
			for i, n := range items {
				out[i] = fetchItem{name: n}
			}
			return out, nil
		}
	}
	var items []fetchItem
	one := func() error {
		it, err := parseFetchItem(p)
		items = append(items, it)
		return err
	}
	if p.peek() == '(' {
		err := p.list(one)
		if err == nil && len(items) == 0 {
			err = p.errorf("empty fetch list")
		}
		return items, err
	}
	return items, one()
}

func parseFetchItem(p *parser) (fetchItem, error) {
	name := strings.ToUpper(p.span(func(b byte) bool { return isAtomChar(b) && b != '[' && b != '<' }))
	it := fetchItem{name: name}
	switch name {
	case "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "MODSEQ",
		"RFC822", "RFC822.HEADER", "RFC822.TEXT":
		return it, nil
	case "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE":
	default:
		return it, p.errorf("unknown fetch item %q", name)
	}
	if !p.take('[') {
		if name == "BODY" {
			return it, nil
		}
		return it, p.errorf("expected [")
	}
	it.peek = strings.HasSuffix(name, ".PEEK")
	it.name = strings.TrimSuffix(name, ".PEEK") + "["
	sec, err := parseSection(p, it.name != "BODY[")
	if err != nil {
		return it, err
	}
	it.sec = sec
	if it.name != "BINARY.SIZE[" && p.take('<') {
		it.partial = true
		var n uint32
		if n, err = p.number(); err != nil {
			return it, err
		}
		it.offset = int64(n)
		if err := p.expect('.'); err != nil {
			return it, err
		}
		if n, err = p.nzNumber(); err != nil {
			return it, err
		}
		it.count = int64(n)
		if err := p.expect('>'); err != nil {
			return it, err
		}
	}
	return it, nil
}

// parseSection reads up to and including "]". binary sections are part
// numbers only (RFC 3516).
func parseSection(p *parser, binary bool) (section, error) {
	var s section
	for p.peek() >= '1' && p.peek() <= '9' {
		n, err := p.nzNumber()
		if err != nil {
			return s, err
		}
		if len(s.path) >= maxDepth {
			return s, p.errorf("section nested too deeply")
		}
		s.path = append(s.path, int(n))
		if !p.take('.') {
			break
		}
	}
	if p.take(']') {
		return s, nil
	}
	if binary {
		return s, p.errorf("bad binary section")
	}
	spec := strings.ToUpper(p.span(func(b byte) bool { return isAtomChar(b) && b != '[' }))
	switch spec {
	case "HEADER", "TEXT":
	case "MIME":
		if len(s.path) == 0 {
			return s, p.errorf("MIME needs a part number")
		}
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		if err := p.sp(); err != nil {
			return s, err
		}
		err := p.list(func() error {
			f, err := p.astring()
			if len(s.fields) < 1000 {
				s.fields = append(s.fields, f)
			}
			return err
		})
		if err != nil {
			return s, err
		}
		if len(s.fields) == 0 {
			return s, p.errorf("empty header list")
		}
	default:
		return s, p.errorf("bad section")
	}
	s.spec = spec
	return s, p.expect(']')
}

// fetchMods are FETCH modifiers (RFC 7162 §3.1.4, §3.2.6).
type fetchMods struct {
	changedSince uint64
	vanished     bool
}

func (c *conn) cmdFetch(tag string, p *parser) error {
	uidCmd := strings.HasPrefix(c.cmd, "UID ")
	var set seqSet
	var items []fetchItem
	var mods fetchMods
	err := p.sp()
	if err == nil {
		set, err = p.seqSet()
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil {
		items, err = parseFetchItems(p)
	}
	if err == nil && p.take(' ') {
		err = p.list(func() error {
			switch {
			case p.takeWord("CHANGEDSINCE "):
				n, err := p.number64()
				mods.changedSince = max(n, 1)
				return err
			case p.takeWord("VANISHED"):
				mods.vanished = true
				return nil
			}
			return p.errorf("unknown fetch modifier")
		})
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return err
	}
	if mods.vanished && (!uidCmd || !c.qresync || mods.changedSince == 0) {
		return badf("VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE")
	}
	if err := c.sync(false, false); err != nil {
		return err
	}
	idx, err := c.resolve(set, uidCmd)
	if err != nil {
		return err
	}
	items = c.implicitItems(items, uidCmd, mods)
	if mods.vanished {
		if err := c.writeVanishedEarlier(set, mods.changedSince); err != nil {
			return err
		}
	}
	if mods.changedSince > 0 {
		kept := idx[:0]
		for _, i := range idx {
			if c.sel.msgs[i].modseq > mods.changedSince {
				kept = append(kept, i)
			}
		}
		idx = kept
	}
	seen, err := c.markSeen(idx, items)
	if err != nil {
		return err
	}
	if err := c.fetchMessages(idx, items, seen); err != nil {
		return err
	}
	if c.fetchErr != nil {
		err := c.fetchErr
		c.fetchErr = nil
		return err
	}
	return c.okUpdates(tag, "", c.cmd+" completed", uidCmd)
}

// implicitItems adds what the command implies: UID for UID FETCH, MODSEQ
// with CHANGEDSINCE or once CONDSTORE is on and flags are asked for.
func (c *conn) implicitItems(items []fetchItem, uidCmd bool, mods fetchMods) []fetchItem {
	has := func(n string) bool {
		for _, it := range items {
			if it.name == n {
				return true
			}
		}
		return false
	}
	if uidCmd && !has("UID") {
		items = append([]fetchItem{{name: "UID"}}, items...)
	}
	if mods.changedSince > 0 || has("MODSEQ") {
		c.condstore = true // RFC 7162 §3.1: CONDSTORE enabling commands
	}
	if c.condstore && (mods.changedSince > 0 || has("FLAGS")) && !has("MODSEQ") {
		items = append(items, fetchItem{name: "MODSEQ"})
	}
	return items
}

// writeVanishedEarlier answers UID FETCH (CHANGEDSINCE n VANISHED).
func (c *conn) writeVanishedEarlier(set seqSet, since uint64) error {
	ch, err := c.srv.st.ChangesSince(c.ctx, c.sel.mb.ID, since)
	if err != nil {
		return err
	}
	var v []uint32
	for _, u := range ch.Vanished {
		// "*" reaches past the highest UID left: it may be the one gone.
		if set.containsUID(u, 1<<32-1) {
			v = append(v, u)
		}
	}
	if len(v) > 0 {
		c.writeLine("* VANISHED (EARLIER) " + uidSetString(v))
	}
	return nil
}

// markSeen sets \Seen on messages whose content is fetched without PEEK
// and returns their indexes, whose FLAGS are then reported.
func (c *conn) markSeen(idx []int, items []fetchItem) (map[int]bool, error) {
	if c.sel.readOnly {
		return nil, nil
	}
	any := false
	for _, it := range items {
		any = any || it.setsSeen()
	}
	if !any {
		return nil, nil
	}
	var uids []uint32
	for _, i := range idx {
		if !hasFlag(c.sel.msgs[i].flags, store.FlagSeen) {
			uids = append(uids, c.sel.msgs[i].uid)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	updated, _, err := c.srv.st.StoreFlags(c.ctx, c.sel.mb.ID, uids, store.FlagsAdd, []string{store.FlagSeen}, 0)
	if err != nil {
		return nil, err
	}
	return c.applyOwnFlags(updated), nil
}

// applyOwnFlags records flag changes this session made and returns the
// indexes of the messages changed.
func (c *conn) applyOwnFlags(updated []store.MessageMeta) map[int]bool {
	changed := map[int]bool{}
	for _, m := range updated {
		if i, ok := c.sel.index(m.UID); ok {
			c.sel.msgs[i].flags, c.sel.msgs[i].modseq = m.Flags, m.ModSeq
			changed[i] = true
		}
	}
	return changed
}

// fetchBatch bounds how many messages' metadata are held at once.
const fetchBatch = 64

func (c *conn) fetchMessages(idx []int, items []fetchItem, seen map[int]bool) error {
	needMsg := false
	for _, it := range items {
		needMsg = needMsg || it.needsMessage()
	}
	for start := 0; start < len(idx); start += fetchBatch {
		batch := idx[start:min(start+fetchBatch, len(idx))]
		var byUID map[uint32]*store.Message
		if needMsg {
			msgs, err := c.srv.st.GetMessages(c.ctx, c.sel.mb.ID, c.uidsOf(batch))
			if err != nil {
				return err
			}
			byUID = make(map[uint32]*store.Message, len(msgs))
			for k := range msgs {
				byUID[msgs[k].UID] = &msgs[k]
			}
		}
		for _, i := range batch {
			var msg *store.Message
			if needMsg {
				if msg = byUID[c.sel.msgs[i].uid]; msg == nil {
					continue // expunged meanwhile, not yet announced
				}
			}
			if err := c.fetchOne(i, msg, items, seen[i]); err != nil {
				// The response line is cut: the session cannot go on.
				c.log.Error("fetch failed", "uid", c.sel.msgs[i].uid, "err", err)
				return &protoErr{code: "SERVERBUG", msg: "Internal error", fatal: true}
			}
		}
	}
	return nil
}

func (c *conn) fetchOne(i int, msg *store.Message, items []fetchItem, flagsChanged bool) error {
	m := c.sel.msgs[i]
	f := &fetchWriter{c: c, msg: msg}
	defer f.close()
	c.out().WriteString("* " + strconv.Itoa(i+1) + " FETCH (")
	wroteFlags := false
	for _, it := range items {
		f.sep()
		switch it.name {
		case "UID":
			c.out().WriteString("UID " + strconv.FormatUint(uint64(m.uid), 10))
		case "FLAGS":
			c.out().WriteString("FLAGS " + flagList(m.flags))
			wroteFlags = true
		case "MODSEQ":
			c.out().WriteString("MODSEQ (" + strconv.FormatUint(m.modseq, 10) + ")")
		default:
			if err := f.item(it); err != nil {
				return err
			}
		}
	}
	if flagsChanged && !wroteFlags {
		f.sep()
		c.out().WriteString("FLAGS " + flagList(m.flags))
	}
	c.out().WriteString(")\r\n")
	if f.soft != nil {
		c.fetchErr = f.soft
	}
	return nil
}
