package imapd

import (
	"slices"

	"github.com/ternmail/tern/internal/store"
)

// cmdExpunge does EXPUNGE and UID EXPUNGE (RFC 4315 §2.1). The \Deleted
// flags are read from the store, not the session's copy, so a flag another
// session just cleared is respected.
func (c *conn) cmdExpunge(tag string, p *parser) error {
	var limit []uint32
	if c.cmd == "UID EXPUNGE" {
		if err := p.sp(); err != nil {
			return err
		}
		set, err := p.seqSet()
		if err != nil {
			return err
		}
		idx, err := c.resolve(set, true)
		if err != nil {
			return err
		}
		limit = c.uidsOf(idx)
	}
	if err := p.end(); err != nil {
		return err
	}
	if c.sel.readOnly {
		return nof("READ-ONLY", "Mailbox is read-only")
	}
	if err := c.sync(true, false); err != nil {
		return err
	}
	metas, err := c.srv.st.ListMessages(c.ctx, c.sel.mb.ID)
	if err != nil {
		return err
	}
	var del []uint32
	for _, m := range metas {
		if !hasFlag(m.Flags, store.FlagDeleted) {
			continue
		}
		if _, known := c.sel.index(m.UID); !known {
			continue
		}
		if limit != nil {
			if _, ok := slices.BinarySearch(limit, m.UID); !ok {
				continue
			}
		}
		del = append(del, m.UID)
	}
	if len(del) > 0 {
		removed, err := c.srv.st.Expunge(c.ctx, c.sel.mb.ID, del)
		if err != nil {
			return err
		}
		c.announceExpunged(removed)
	}
	return c.ok(tag, "", c.cmd+" completed")
}
