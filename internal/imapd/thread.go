package imapd

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cmdThread does THREAD and UID THREAD (RFC 5256) with ORDEREDSUBJECT and
// REFERENCES.
func (c *conn) cmdThread(tag string, p *parser) error {
	uidCmd := c.cmd == "UID THREAD"
	var alg string
	err := p.sp()
	if err == nil {
		alg, err = p.atom()
	}
	alg = strings.ToUpper(alg)
	if err == nil && alg != "ORDEREDSUBJECT" && alg != "REFERENCES" {
		err = badf("Unsupported threading algorithm")
	}
	key, err := c.charsetAndKeys(p, err)
	if err != nil {
		return err
	}
	keys, err := c.searchSortKeys(key, alg == "REFERENCES")
	if err != nil {
		return err
	}
	var roots []*container
	if alg == "ORDEREDSUBJECT" {
		roots = orderedSubject(keys)
	} else {
		roots = references(keys)
	}
	var sb strings.Builder
	sb.WriteString("* THREAD ")
	for _, r := range roots {
		sb.WriteByte('(')
		c.writeThread(&sb, r, uidCmd)
		sb.WriteByte(')')
	}
	c.writeLine(strings.TrimSuffix(sb.String(), " "))
	return c.okUpdates(tag, "", c.cmd+" completed", uidCmd)
}

// container is a node of a thread tree; msg is nil for a message only
// referenced (a dummy).
type container struct {
	msg      *sortKeys
	parent   *container
	children []*container
}

func (t *container) date() time.Time {
	if t.msg != nil {
		return t.msg.date
	}
	if len(t.children) > 0 {
		return t.children[0].date()
	}
	return time.Time{}
}

func (t *container) seq() int {
	if t.msg != nil {
		return t.msg.i
	}
	if len(t.children) > 0 {
		return t.children[0].seq()
	}
	return 0
}

// writeThread writes "n" then a single child inline or several children
// each in parentheses: (3 6 (4 23)(44 7 96)).
func (c *conn) writeThread(sb *strings.Builder, t *container, uid bool) {
	for {
		if t.msg != nil {
			sb.WriteString(c.number(t.msg.i, uid))
		}
		switch len(t.children) {
		case 0:
			return
		case 1:
			if t.msg != nil {
				sb.WriteByte(' ')
			}
			t = t.children[0]
			continue
		}
		if t.msg != nil {
			sb.WriteByte(' ')
		}
		for _, ch := range t.children {
			sb.WriteByte('(')
			c.writeThread(sb, ch, uid)
			sb.WriteByte(')')
		}
		return
	}
}

func byDate(a, b *container) int {
	if r := a.date().Compare(b.date()); r != 0 {
		return r
	}
	return cmp.Compare(a.seq(), b.seq())
}

// orderedSubject groups by base subject; the first message (by date) of
// each group is the parent of the others (RFC 5256 §3).
func orderedSubject(keys []sortKeys) []*container {
	slices.SortStableFunc(keys, func(a, b sortKeys) int {
		return cmp.Or(cmp.Compare(a.subject, b.subject), a.date.Compare(b.date), cmp.Compare(a.i, b.i))
	})
	var roots []*container
	for i := range keys {
		k := &keys[i]
		if len(roots) > 0 && roots[len(roots)-1].msg.subject == k.subject {
			r := roots[len(roots)-1]
			r.children = append(r.children, &container{msg: k, parent: r})
			continue
		}
		roots = append(roots, &container{msg: k})
	}
	slices.SortStableFunc(roots, byDate)
	return roots
}

// references threads by Message-ID, References and In-Reply-To, then
// gathers roots with the same base subject (RFC 5256 §3 REFERENCES,
// steps 1 to 6).
func references(keys []sortKeys) []*container {
	byID := map[string]*container{}
	var order []*container
	get := func(id string) *container {
		t := byID[id]
		if t == nil {
			t = &container{}
			byID[id] = t
			order = append(order, t)
		}
		return t
	}
	for i := range keys {
		k := &keys[i]
		id := k.messageID
		if id == "" || (byID[id] != nil && byID[id].msg != nil) {
			id = "\x00" + strconv.Itoa(k.i) // missing or duplicate ID
		}
		t := get(id)
		t.msg = k
		var prev *container
		for _, ref := range k.parentRefs {
			r := get(ref)
			if prev != nil && r.parent == nil && r != prev && !descends(prev, r) {
				link(prev, r)
			}
			prev = r
		}
		if prev != nil && prev != t && !descends(prev, t) {
			link(prev, t)
		} else if prev == nil && t.parent != nil {
			unlink(t)
		}
	}
	var roots []*container
	for _, t := range order {
		if t.parent == nil {
			roots = append(roots, t)
		}
	}
	roots = prune(roots, true)
	roots = gatherSubjects(roots)
	sortTree(roots)
	return roots
}

// descends reports whether a is t or below t.
func descends(a, t *container) bool {
	for x := a; x != nil; x = x.parent {
		if x == t {
			return true
		}
	}
	return false
}

func link(parent, child *container) {
	if child.parent != nil {
		unlink(child)
	}
	child.parent = parent
	parent.children = append(parent.children, child)
}

func unlink(child *container) {
	p := child.parent
	p.children = slices.DeleteFunc(p.children, func(x *container) bool { return x == child })
	child.parent = nil
}

// prune drops dummies without children and replaces dummies by their
// children (at the root only when there is one).
func prune(list []*container, root bool) []*container {
	var out []*container
	for _, t := range list {
		t.children = prune(t.children, false)
		switch {
		case t.msg == nil && len(t.children) == 0:
		case t.msg == nil && (!root || len(t.children) == 1):
			for _, ch := range t.children {
				ch.parent = t.parent
			}
			out = append(out, t.children...)
		default:
			out = append(out, t)
		}
	}
	return out
}

// gatherSubjects merges roots sharing a base subject (RFC 5256 step 5).
func gatherSubjects(roots []*container) []*container {
	subj := func(t *container) (string, bool) {
		if t.msg == nil {
			t = t.children[0]
		}
		return t.msg.subject, t.msg.isReplyFwd
	}
	table := map[string]*container{}
	for _, r := range roots {
		s, reply := subj(r)
		if s == "" {
			continue
		}
		old := table[s]
		if old == nil || (r.msg == nil && old.msg != nil) {
			table[s] = r
			continue
		}
		if _, oldReply := subj(old); oldReply && !reply {
			table[s] = r
		}
	}
	var out []*container
	for _, r := range roots {
		s, reply := subj(r)
		t := table[s]
		if s == "" || t == nil || t == r {
			out = append(out, r)
			continue
		}
		_, tReply := subj(t)
		switch {
		case t.msg == nil && r.msg == nil:
			for _, ch := range r.children {
				link(t, ch)
			}
		case t.msg == nil:
			link(t, r)
		case r.msg == nil:
			// r, a dummy, absorbs t: replace t by r in the table.
			link(r, t)
			table[s] = r
			out = slices.DeleteFunc(out, func(x *container) bool { return x == t })
			out = append(out, r)
		case reply && !tReply:
			link(t, r)
		default:
			d := &container{}
			out = slices.DeleteFunc(out, func(x *container) bool { return x == t })
			link(d, t)
			link(d, r)
			table[s] = d
			out = append(out, d)
		}
	}
	return out
}

func sortTree(list []*container) {
	for _, t := range list {
		sortTree(t.children)
	}
	slices.SortStableFunc(list, byDate)
}
