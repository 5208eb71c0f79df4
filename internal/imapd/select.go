package imapd

import (
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/store"
)

// msgState is all a session keeps of a message: enough to map sequence
// numbers and to tell which changes the client has not seen.
type msgState struct {
	uid    uint32
	modseq uint64
	flags  []string
}

// selected is the session's view of its selected mailbox. msgs is
// ordered by UID; the sequence number of msgs[i] is i+1.
type selected struct {
	mb       store.Mailbox
	readOnly bool
	msgs     []msgState
	modseq   uint64   // changes up to here are applied
	pending  []uint32 // expunged elsewhere, not yet announced (ascending)
}

func (s *selected) index(uid uint32) (int, bool) {
	return sort.Find(len(s.msgs), func(i int) int {
		switch {
		case uid < s.msgs[i].uid:
			return -1
		case uid > s.msgs[i].uid:
			return 1
		}
		return 0
	})
}

func (s *selected) maxUID() uint32 {
	if len(s.msgs) == 0 {
		return 0
	}
	return s.msgs[len(s.msgs)-1].uid
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// qresyncParams are SELECT's (QRESYNC (...)) parameters (RFC 7162 §3.2.5).
type qresyncParams struct {
	uidValidity uint32
	modseq      uint64
	known       *seqSet
}

func (c *conn) cmdSelect(tag string, p *parser) error {
	readOnly := c.cmd == "EXAMINE"
	if err := p.sp(); err != nil {
		return err
	}
	name, err := c.mailboxArg(p)
	if err != nil {
		return err
	}
	var qr *qresyncParams
	if p.take(' ') {
		err := p.list(func() error {
			switch {
			case p.takeWord("CONDSTORE"):
				c.condstore = true
			case p.takeWord("QRESYNC "):
				if !c.qresync {
					return badf("QRESYNC is not enabled")
				}
				q, err := parseQresync(p)
				qr = q
				return err
			default:
				return p.errorf("unknown select parameter")
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if c.sel != nil {
		c.sel, c.saved = nil, nil
		c.state = stateAuth
		if c.qresync || c.rev2 {
			c.writeLine("* OK [CLOSED] Previous mailbox closed")
		}
	}
	mb, err := c.srv.st.GetMailbox(c.ctx, c.acct.ID, name)
	if err != nil {
		return err
	}
	metas, err := c.srv.st.ListMessages(c.ctx, mb.ID)
	if err != nil {
		return err
	}
	sel := &selected{mb: mb, readOnly: readOnly, modseq: mb.HighestModSeq, msgs: make([]msgState, len(metas))}
	for i, m := range metas {
		sel.msgs[i] = msgState{uid: m.UID, modseq: m.ModSeq, flags: m.Flags}
	}
	c.writeSelectState(sel)
	c.sel, c.state, c.dirty = sel, stateSelected, true
	if qr != nil && qr.uidValidity == mb.UIDValidity {
		if err := c.qresyncSelect(qr); err != nil {
			return err
		}
	}
	code := "READ-WRITE"
	if readOnly {
		code = "READ-ONLY"
	}
	return c.ok(tag, code, c.cmd+" completed")
}

func parseQresync(p *parser) (*qresyncParams, error) {
	q := &qresyncParams{}
	err := p.expect('(')
	if err == nil {
		q.uidValidity, err = p.nzNumber()
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil {
		q.modseq, err = p.number64()
	}
	if err == nil && p.take(' ') {
		var s seqSet
		if p.peek() != '(' {
			if s, err = p.seqSet(); err == nil {
				q.known = &s
			}
			if err == nil && p.take(' ') && p.peek() != '(' {
				err = p.errorf("bad QRESYNC parameters")
			}
		}
		if err == nil && p.peek() == '(' {
			// The sequence match data is an optimisation we do not need.
			err = p.list(func() error { _, err := p.seqSet(); return err })
		}
	}
	if err == nil {
		err = p.expect(')')
	}
	return q, err
}

// qresyncSelect reports what changed since the client's MODSEQ: VANISHED
// (EARLIER) then FETCH of changed messages (RFC 7162 §3.2.5.1).
func (c *conn) qresyncSelect(q *qresyncParams) error {
	ch, err := c.srv.st.ChangesSince(c.ctx, c.sel.mb.ID, q.modseq)
	if err != nil {
		return err
	}
	var vanished []uint32
	for _, u := range ch.Vanished {
		if q.known == nil || q.known.containsUID(u, 1<<32-1) {
			vanished = append(vanished, u)
		}
	}
	if len(vanished) > 0 {
		c.writeLine("* VANISHED (EARLIER) " + uidSetString(vanished))
	}
	for _, m := range ch.Changed {
		if i, ok := c.sel.index(m.UID); ok {
			c.writeFlagsFetch(i)
		}
	}
	return nil
}

// containsUID reports whether uid is in the set, "*" being max.
func (s *seqSet) containsUID(uid, maxv uint32) bool {
	for _, r := range s.ranges {
		lo, hi := r.lo, r.hi
		if lo == 0 {
			lo = maxv
		}
		if hi == 0 {
			hi = maxv
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if uid >= lo && uid <= hi {
			return true
		}
	}
	return false
}

func (c *conn) writeSelectState(sel *selected) {
	flags := slices.Clone(systemFlags)
	seen := map[string]bool{}
	firstUnseen := 0
	for i, m := range sel.msgs {
		for _, f := range m.flags {
			if !strings.HasPrefix(f, `\`) && !seen[strings.ToLower(f)] && len(seen) < 200 {
				seen[strings.ToLower(f)] = true
				flags = append(flags, f)
			}
		}
		if firstUnseen == 0 && !hasFlag(m.flags, store.FlagSeen) {
			firstUnseen = i + 1
		}
	}
	c.writeLine("* FLAGS " + flagList(flags))
	if sel.readOnly {
		c.writeLine("* OK [PERMANENTFLAGS ()] Read-only mailbox")
	} else {
		c.writeLine("* OK [PERMANENTFLAGS " + flagList(append(flags, `\*`)) + "] Flags permitted")
	}
	c.writef("* %d EXISTS", len(sel.msgs))
	if !c.rev2 {
		c.writeLine("* 0 RECENT")
		if firstUnseen > 0 {
			c.writef("* OK [UNSEEN %d] First unseen", firstUnseen)
		}
	}
	c.writef("* OK [UIDVALIDITY %d] UIDs valid", sel.mb.UIDValidity)
	c.writef("* OK [UIDNEXT %d] Predicted next UID", sel.mb.UIDNext)
	c.writef("* OK [HIGHESTMODSEQ %d] Highest", max(sel.mb.HighestModSeq, 1))
	if c.rev2 {
		c.writeLine("* LIST () \"/\" " + c.encodeName(sel.mb.Name))
	}
}

// cmdClose does CLOSE (expunging \Deleted messages silently) and UNSELECT.
func (c *conn) cmdClose(tag string, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	sel := c.sel
	c.sel, c.saved, c.state = nil, nil, stateAuth
	if c.cmd == "CLOSE" && !sel.readOnly {
		metas, err := c.srv.st.ListMessages(c.ctx, sel.mb.ID)
		if err != nil {
			return err
		}
		var del []uint32
		for _, m := range metas {
			if _, known := sel.index(m.UID); known && hasFlag(m.Flags, store.FlagDeleted) {
				del = append(del, m.UID)
			}
		}
		if len(del) > 0 {
			if _, err := c.srv.st.Expunge(c.ctx, sel.mb.ID, del); err != nil && !errors.Is(err, store.ErrNoSuchMailbox) {
				return err
			}
		}
	}
	return c.ok(tag, "", c.cmd+" completed")
}

// writeFlagsFetch reports a message's flags unilaterally.
func (c *conn) writeFlagsFetch(i int) {
	m := c.sel.msgs[i]
	line := "* " + strconv.Itoa(i+1) + " FETCH (UID " + strconv.FormatUint(uint64(m.uid), 10) + " FLAGS " + flagList(m.flags)
	if c.condstore {
		line += " MODSEQ (" + strconv.FormatUint(m.modseq, 10) + ")"
	}
	c.writeLine(line + ")")
}

// sync reports changes other sessions (or deliveries) made to the selected
// mailbox: flag changes, expunges (only when allowExpunge, RFC 3501
// §7.4.1; otherwise kept pending, the message keeping its sequence number)
// and new messages. force queries the store even without a signal.
func (c *conn) sync(allowExpunge, force bool) error {
	sel := c.sel
	if sel == nil {
		return nil
	}
	select {
	case <-c.notify:
		c.dirty = true
	default:
	}
	if !c.dirty && !force && !(allowExpunge && len(sel.pending) > 0) {
		return nil
	}
	if c.dirty || force {
		c.dirty = false
		ch, err := c.srv.st.ChangesSince(c.ctx, sel.mb.ID, sel.modseq)
		if errors.Is(err, store.ErrNoSuchMailbox) {
			return nil // deleted under us: nothing more will change
		}
		if err != nil {
			return err
		}
		c.applyChanges(ch)
	}
	if allowExpunge && len(sel.pending) > 0 {
		c.announceExpunged(sel.pending)
		sel.pending = nil
	}
	return nil
}

func (c *conn) applyChanges(ch store.Changes) {
	sel := c.sel
	gone := map[uint32]bool{}
	for _, u := range ch.Vanished {
		gone[u] = true
	}
	added := 0
	for _, m := range ch.Changed {
		i, known := sel.index(m.UID)
		switch {
		case known && m.ModSeq > sel.msgs[i].modseq:
			changed := !slices.Equal(m.Flags, sel.msgs[i].flags)
			sel.msgs[i].modseq, sel.msgs[i].flags = m.ModSeq, m.Flags
			if (changed || c.condstore) && !gone[m.UID] {
				c.writeFlagsFetch(i)
			}
		case !known && m.UID > sel.maxUID() && !gone[m.UID]:
			sel.msgs = append(sel.msgs, msgState{uid: m.UID, modseq: m.ModSeq, flags: m.Flags})
			added++
		}
	}
	for _, u := range ch.Vanished {
		if _, known := sel.index(u); known {
			sel.pending = append(sel.pending, u)
		}
	}
	slices.Sort(sel.pending)
	sel.pending = slices.Compact(sel.pending)
	if added > 0 {
		c.writef("* %d EXISTS", len(sel.msgs))
	}
	if ch.HighestModSeq > sel.modseq {
		sel.modseq = ch.HighestModSeq
	}
	if ch.UIDNext > sel.mb.UIDNext {
		sel.mb.UIDNext = ch.UIDNext
	}
}

// announceExpunged removes the messages and says so: VANISHED with
// QRESYNC (RFC 7162 §3.2.10), else EXPUNGE from the highest sequence
// number down so every number is valid when sent.
func (c *conn) announceExpunged(uids []uint32) {
	sel := c.sel
	uids = slices.Clone(uids)
	slices.Sort(uids)
	var idx []int
	var vanished []uint32
	for _, u := range uids {
		if i, ok := sel.index(u); ok {
			idx = append(idx, i)
			vanished = append(vanished, u)
		}
	}
	if len(idx) == 0 {
		return
	}
	if c.qresync {
		c.writeLine("* VANISHED " + uidSetString(vanished))
	}
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		if !c.qresync {
			c.writef("* %d EXPUNGE", i+1)
		}
		sel.msgs = slices.Delete(sel.msgs, i, i+1)
	}
	if len(c.saved) > 0 {
		c.saved = slices.DeleteFunc(c.saved, func(u uint32) bool { _, ok := slices.BinarySearch(vanished, u); return ok })
	}
}

// resolve maps a sequence set (or UID set) to indexes in sel.msgs,
// ascending and without duplicates. Message numbers beyond the mailbox
// are a BAD (RFC 9051 §6.4.5 for FETCH and the others); UIDs that do not
// exist are ignored.
func (c *conn) resolve(set seqSet, uid bool) ([]int, error) {
	sel := c.sel
	if set.saved {
		var idx []int
		for _, u := range c.saved {
			if i, ok := sel.index(u); ok {
				idx = append(idx, i)
			}
		}
		return idx, nil
	}
	n := len(sel.msgs)
	// Ranges become index ranges, sorted and merged, so the work stays
	// linear however the client's ranges overlap.
	type span struct{ lo, hi int } // indexes, hi exclusive
	spans := make([]span, 0, len(set.ranges))
	for _, r := range set.ranges {
		if uid {
			lo, hi := r.lo, r.hi
			if lo == 0 {
				lo = sel.maxUID()
			}
			if hi == 0 {
				hi = sel.maxUID()
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			i, _ := sel.index(lo)
			j, found := sel.index(hi)
			if found {
				j++
			}
			if i < j {
				spans = append(spans, span{i, j})
			}
			continue
		}
		lo, hi := int(r.lo), int(r.hi)
		if lo == 0 {
			lo = n
		}
		if hi == 0 {
			hi = n
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo < 1 || hi > n {
			return nil, badf("Invalid message sequence number")
		}
		spans = append(spans, span{lo - 1, hi})
	}
	slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
	var idx []int
	next := 0
	for _, s := range spans {
		for i := max(s.lo, next); i < s.hi; i++ {
			idx = append(idx, i)
		}
		next = max(next, s.hi)
	}
	return idx, nil
}

func (c *conn) uidsOf(idx []int) []uint32 {
	uids := make([]uint32, len(idx))
	for k, i := range idx {
		uids[k] = c.sel.msgs[i].uid
	}
	return uids
}
