package imapd

import (
	"errors"

	"github.com/ternmail/tern/internal/store"
)

// cmdCopy does COPY, MOVE (RFC 6851) and their UID forms, answering with
// COPYUID (RFC 4315).
func (c *conn) cmdCopy(tag string, p *parser) error {
	uidCmd := c.cmd == "UID COPY" || c.cmd == "UID MOVE"
	move := c.cmd == "MOVE" || c.cmd == "UID MOVE"
	var set seqSet
	var name string
	err := p.sp()
	if err == nil {
		set, err = p.seqSet()
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil {
		name, err = c.mailboxArg(p)
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return err
	}
	if move && c.sel.readOnly {
		return nof("READ-ONLY", "Mailbox is read-only")
	}
	if err := c.sync(false, false); err != nil {
		return err
	}
	idx, err := c.resolve(set, uidCmd)
	if err != nil {
		return err
	}
	dst, err := c.srv.st.GetMailbox(c.ctx, c.acct.ID, name)
	if errors.Is(err, store.ErrNoSuchMailbox) {
		return nof("TRYCREATE", "No such mailbox")
	}
	if err != nil {
		return err
	}
	if len(idx) == 0 {
		return c.ok(tag, "", c.cmd+" completed, nothing to do")
	}
	uids := c.uidsOf(idx)
	var src, dstUIDs []uint32
	if move {
		src, dstUIDs, err = c.srv.st.Move(c.ctx, c.sel.mb.ID, uids, dst.ID)
	} else {
		src, dstUIDs, err = c.srv.st.Copy(c.ctx, c.sel.mb.ID, uids, dst.ID)
	}
	if err != nil {
		return err
	}
	c.dirty = c.dirty || dst.ID == c.sel.mb.ID
	code := ""
	if len(src) > 0 {
		code = "COPYUID " + uitoa(dst.UIDValidity) + " " + uidSetString(src) + " " + uidSetString(dstUIDs)
	}
	if !move {
		return c.ok(tag, code, c.cmd+" completed")
	}
	// RFC 6851 §4.3: COPYUID comes untagged, before the expunges.
	if code != "" {
		c.writeLine("* OK [" + code + "] Moved")
	}
	c.announceExpunged(src)
	return c.ok(tag, "", c.cmd+" completed")
}
