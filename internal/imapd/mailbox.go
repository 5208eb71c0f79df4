package imapd

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/mailboxname"
	"github.com/ternmail/tern/internal/store"
)

// mailboxArg reads a mailbox name, decodes modified UTF-7 for clients that
// did not enable UTF-8, spells INBOX canonically and validates the name.
func (c *conn) mailboxArg(p *parser) (string, error) {
	s, err := p.astring()
	if err != nil {
		return "", err
	}
	name, err := c.decodeName(s)
	if err != nil {
		return "", err
	}
	if err := validMailboxName(name); err != nil {
		return "", err
	}
	return name, nil
}

func (c *conn) decodeName(s string) (string, error) {
	if !c.utf8 {
		d, err := decodeMUTF7(s)
		if err != nil {
			return "", badf("Invalid mailbox name encoding")
		}
		s = d
	}
	return mailboxname.Canonical(s), nil
}

// validMailboxName applies the naming rules every door shares
// (mailboxname.Check), with IMAP's CANNOT reply (RFC 5530).
func validMailboxName(name string) error {
	if err := mailboxname.Check(name); err != nil {
		// mailboxname's errors read "mailbox name too long": capitalise
		// the first letter for the response text.
		msg := err.Error()
		return nof("CANNOT", "%s", strings.ToUpper(msg[:1])+msg[1:])
	}
	return nil
}

// encodeName spells a stored name for this client.
func (c *conn) encodeName(name string) string {
	if !c.utf8 {
		name = encodeMUTF7(name)
	}
	return astring(name, c.utf8)
}

func (c *conn) cmdCreate(tag string, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	s, err := p.astring()
	if err != nil {
		return err
	}
	// A trailing separator only says the client means to create children
	// (RFC 3501 §6.3.3).
	s = strings.TrimSuffix(s, "/")
	name, err := c.decodeName(s)
	if err != nil {
		return err
	}
	var use string
	if p.take(' ') {
		// CREATE-SPECIAL-USE (RFC 6154 §3): (USE (\Sent)).
		err = p.list(func() error {
			if !p.takeWord("USE ") {
				return p.errorf("expected USE")
			}
			return p.list(func() error {
				if !p.take('\\') {
					return p.errorf("expected special-use attribute")
				}
				a, err := p.atom()
				if err != nil {
					return err
				}
				if use != "" {
					return nof("USEATTR", "Only one special-use attribute per mailbox")
				}
				use = specialUse(a)
				if use == "" {
					return nof("USEATTR", "Unsupported special-use attribute")
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if err := validMailboxName(name); err != nil {
		return err
	}
	if name == "INBOX" {
		return nof("ALREADYEXISTS", "INBOX always exists")
	}
	if err := mailboxname.CreateParents(c.ctx, c.srv.st, c.acct.ID, name); err != nil {
		return err
	}
	if _, err := c.srv.st.CreateMailbox(c.ctx, c.acct.ID, name, use); err != nil {
		return err
	}
	return c.ok(tag, "", "CREATE completed")
}

// specialUse maps a CREATE-SPECIAL-USE attribute name (after the backslash) to
// the store's spelling; "" for unsupported ones (\All and \Flagged are
// virtual mailboxes, which Tern does not have).
func specialUse(a string) string {
	for _, u := range []string{store.SpecialSent, store.SpecialDrafts, store.SpecialTrash, store.SpecialJunk, store.SpecialArchive} {
		if strings.EqualFold(`\`+a, u) {
			return u
		}
	}
	return ""
}

func (c *conn) cmdDelete(tag string, p *parser) error {
	name, err := c.oneMailboxArg(p)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return nof("CANNOT", "INBOX cannot be deleted")
	}
	if c.sel != nil && c.sel.mb.Name == name {
		return nof("INUSE", "Mailbox is selected")
	}
	if err := c.srv.st.DeleteMailbox(c.ctx, c.acct.ID, name); err != nil {
		return err
	}
	return c.ok(tag, "", "DELETE completed")
}

func (c *conn) oneMailboxArg(p *parser) (string, error) {
	if err := p.sp(); err != nil {
		return "", err
	}
	name, err := c.mailboxArg(p)
	if err != nil {
		return "", err
	}
	return name, p.end()
}

func (c *conn) cmdRename(tag string, p *parser) error {
	var from, to string
	err := p.sp()
	if err == nil {
		from, err = c.mailboxArg(p)
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil {
		to, err = c.mailboxArg(p)
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return err
	}
	if to == "INBOX" {
		return nof("ALREADYEXISTS", "INBOX always exists")
	}
	if err := c.srv.st.RenameMailbox(c.ctx, c.acct.ID, from, to); err != nil {
		return err
	}
	return c.ok(tag, "", "RENAME completed")
}

func (c *conn) cmdSubscribe(tag string, p *parser) error {
	on := c.cmd == "SUBSCRIBE"
	name, err := c.oneMailboxArg(p)
	if err != nil {
		return err
	}
	if err := c.srv.st.SetSubscribed(c.ctx, c.acct.ID, name, on); err != nil {
		if !on && errors.Is(err, store.ErrNoSuchMailbox) {
			return c.ok(tag, "", "UNSUBSCRIBE completed")
		}
		return err
	}
	return c.ok(tag, "", "Completed")
}

// statusItems parses the STATUS attribute list (RFC 9051 §6.3.11).
func (c *conn) statusItems(p *parser) ([]string, error) {
	var items []string
	err := p.list(func() error {
		a, err := p.atom()
		if err != nil {
			return err
		}
		a = strings.ToUpper(a)
		switch a {
		case "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ", "APPENDLIMIT":
			items = append(items, a)
			return nil
		}
		return p.errorf("unknown status item %s", a)
	})
	return items, err
}

func (c *conn) cmdStatus(tag string, p *parser) error {
	var name string
	var items []string
	err := p.sp()
	if err == nil {
		name, err = c.mailboxArg(p)
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil {
		items, err = c.statusItems(p)
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return err
	}
	mb, err := c.srv.st.GetMailbox(c.ctx, c.acct.ID, name)
	if err != nil {
		return err
	}
	if err := c.writeStatus(mb, items); err != nil {
		return err
	}
	return c.ok(tag, "", "STATUS completed")
}

func (c *conn) writeStatus(mb store.Mailbox, items []string) error {
	st, err := c.srv.st.MailboxStatus(c.ctx, mb.ID)
	if err != nil {
		return err
	}
	var out []string
	for _, it := range items {
		var v string
		switch it {
		case "MESSAGES":
			v = strconv.Itoa(st.Messages)
		case "UIDNEXT":
			v = strconv.FormatUint(uint64(st.UIDNext), 10)
		case "UIDVALIDITY":
			v = strconv.FormatUint(uint64(st.UIDValidity), 10)
		case "UNSEEN":
			v = strconv.Itoa(st.Unseen)
		case "DELETED":
			v = strconv.Itoa(st.Deleted)
		case "SIZE":
			v = strconv.FormatInt(st.Size, 10)
		case "RECENT":
			v = "0"
		case "HIGHESTMODSEQ":
			v = strconv.FormatUint(max(st.HighestModSeq, 1), 10)
		case "APPENDLIMIT":
			v = strconv.FormatInt(c.srv.cfg.MaxLiteralBytes, 10)
		}
		out = append(out, it+" "+v)
	}
	c.writeLine("* STATUS " + c.encodeName(mb.Name) + " (" + strings.Join(out, " ") + ")")
	return nil
}

// listOpts are LIST-EXTENDED selection and return options (RFC 5258).
type listOpts struct {
	subscribedOnly, specialUseOnly, recursive bool
	retSubscribed, retChildren, retSpecialUse bool
	status                                    []string
	lsub                                      bool
}

func (c *conn) cmdLsub(tag string, p *parser) error {
	return c.list(tag, p, listOpts{subscribedOnly: true, lsub: true})
}

func (c *conn) cmdList(tag string, p *parser) error {
	var o listOpts
	if err := p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' {
		err := p.list(func() error {
			a, err := p.atom()
			switch strings.ToUpper(a) {
			case "SUBSCRIBED":
				o.subscribedOnly, o.retSubscribed = true, true
			case "SPECIAL-USE":
				o.specialUseOnly, o.retSpecialUse = true, true
			case "RECURSIVEMATCH":
				o.recursive = true
			case "REMOTE":
			default:
				if err == nil {
					err = p.errorf("unknown selection option")
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
		if o.recursive && !o.subscribedOnly {
			return badf("RECURSIVEMATCH needs another selection option")
		}
	}
	return c.list(tag, p, o)
}

func (c *conn) list(tag string, p *parser, o listOpts) error {
	if o.lsub {
		if err := p.sp(); err != nil {
			return err
		}
	}
	ref, err := p.astring()
	if err == nil {
		err = p.sp()
	}
	if err != nil {
		return err
	}
	var patterns []string
	if p.peek() == '(' {
		err = p.list(func() error {
			s, err := p.listMailbox()
			patterns = append(patterns, s)
			return err
		})
	} else {
		var s string
		s, err = p.listMailbox()
		patterns = append(patterns, s)
	}
	if err != nil {
		return err
	}
	if p.takeWord(" RETURN ") {
		if err := c.listReturn(p, &o); err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if len(patterns) == 1 && patterns[0] == "" && !o.lsub {
		// RFC 3501 §6.3.8: the hierarchy delimiter and root.
		c.writeLine(`* LIST (\Noselect) "/" ""`)
		return c.ok(tag, "", "LIST completed")
	}
	for i := range patterns {
		pat, err := c.decodeName(ref + patterns[i])
		if err != nil {
			return err
		}
		if strings.Count(pat, "*")+strings.Count(pat, "%") > 8 {
			// matchPattern backtracks: bound its work.
			return badf("Too many wildcards")
		}
		patterns[i] = mailboxname.Canonical(pat)
	}
	mboxes, err := c.srv.st.ListMailboxes(c.ctx, c.acct.ID)
	if err != nil {
		return err
	}
	for _, e := range listEntries(mboxes, patterns, o) {
		c.writeListEntry(e, o)
		if e.mb != nil && len(o.status) > 0 {
			if err := c.writeStatus(*e.mb, o.status); err != nil {
				return err
			}
		}
	}
	return c.ok(tag, "", c.cmd+" completed")
}

func (c *conn) listReturn(p *parser, o *listOpts) error {
	return p.list(func() error {
		a, err := p.atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "SUBSCRIBED":
			o.retSubscribed = true
		case "CHILDREN":
			o.retChildren = true
		case "SPECIAL-USE":
			o.retSpecialUse = true
		case "STATUS":
			if err := p.sp(); err != nil {
				return err
			}
			o.status, err = c.statusItems(p)
			return err
		default:
			return p.errorf("unknown return option")
		}
		return nil
	})
}

type listEntry struct {
	name          string
	mb            *store.Mailbox // nil for a parent that does not exist
	children      bool
	subscribed    bool
	childSubMatch bool // RECURSIVEMATCH: a subscribed child matched
}

// listEntries selects what LIST or LSUB shows, sorted by name.
func listEntries(mboxes []store.Mailbox, patterns []string, o listOpts) []listEntry {
	byName := map[string]*listEntry{}
	for i := range mboxes {
		mb := &mboxes[i]
		byName[mb.Name] = &listEntry{name: mb.Name, mb: mb, subscribed: mb.Subscribed}
	}
	// Parents that do not exist, and \HasChildren.
	for i := range mboxes {
		name := mboxes[i].Name
		for j := len(name) - 1; j > 0; j-- {
			if name[j] != '/' {
				continue
			}
			parent := name[:j]
			e := byName[parent]
			if e == nil {
				e = &listEntry{name: parent}
				byName[parent] = e
			}
			e.children = true
			if mboxes[i].Subscribed {
				e.childSubMatch = true
			}
		}
	}
	var out []listEntry
	for _, e := range byName {
		matched := false
		for _, pat := range patterns {
			if matchPattern(pat, e.name) {
				matched = true
				break
			}
		}
		if !matched {
			continue
		}
		switch {
		case e.mb == nil && !hasPercent(patterns) && !(o.recursive && e.childSubMatch):
			continue // "*" lists real mailboxes; "%" also shows their parents
		case o.subscribedOnly && !e.subscribed && !(o.recursive && e.childSubMatch) && !(o.lsub && e.mb == nil && e.childSubMatch):
			continue
		case o.specialUseOnly && (e.mb == nil || e.mb.SpecialUse == ""):
			continue
		}
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].name == "INBOX") != (out[j].name == "INBOX") {
			return out[i].name == "INBOX"
		}
		return out[i].name < out[j].name
	})
	return out
}

func hasPercent(patterns []string) bool {
	for _, p := range patterns {
		if strings.Contains(p, "%") {
			return true
		}
	}
	return false
}

func (c *conn) writeListEntry(e listEntry, o listOpts) {
	var attrs []string
	if e.mb == nil {
		if c.rev2 && !o.lsub {
			attrs = append(attrs, `\NonExistent`)
		} else {
			attrs = append(attrs, `\Noselect`)
		}
	}
	if !o.lsub {
		if e.children {
			attrs = append(attrs, `\HasChildren`)
		} else {
			attrs = append(attrs, `\HasNoChildren`)
		}
		if (o.retSubscribed || o.subscribedOnly) && e.subscribed {
			attrs = append(attrs, `\Subscribed`)
		}
		if e.mb != nil && e.mb.SpecialUse != "" {
			attrs = append(attrs, e.mb.SpecialUse)
		}
	}
	line := "* LIST (" + strings.Join(attrs, " ") + `) "/" ` + c.encodeName(e.name)
	if o.lsub {
		line = "* LSUB" + line[len("* LIST"):]
	}
	if o.recursive && e.childSubMatch && !e.subscribed {
		line += ` (("CHILDINFO" ("SUBSCRIBED")))`
	}
	c.writeLine(line)
}

// matchPattern matches a LIST pattern: "*" is anything, "%" anything but
// the hierarchy separator (RFC 3501 §6.3.8).
func matchPattern(pat, name string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case '*', '%':
			wild := pat[0]
			rest := pat[1:]
			for i := 0; i <= len(name); i++ {
				if matchPattern(rest, name[i:]) {
					return true
				}
				if i < len(name) && wild == '%' && name[i] == '/' {
					return false
				}
			}
			return false
		default:
			if name == "" || name[0] != pat[0] {
				return false
			}
			pat, name = pat[1:], name[1:]
		}
	}
	return name == ""
}
