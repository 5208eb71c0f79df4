package imapd

import (
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/store"
)

// cmdStore does STORE and UID STORE, with CONDSTORE's UNCHANGEDSINCE
// (RFC 7162 §3.1.3).
func (c *conn) cmdStore(tag string, p *parser) error {
	uidCmd := c.cmd == "UID STORE"
	var set seqSet
	var unchangedSince uint64
	conditional := false
	err := p.sp()
	if err == nil {
		set, err = p.seqSet()
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil && p.peek() == '(' {
		err = p.list(func() error {
			if !p.takeWord("UNCHANGEDSINCE ") {
				return p.errorf("unknown store modifier")
			}
			n, err := p.number64()
			unchangedSince, conditional = n, true
			return err
		})
		if err == nil {
			err = p.sp()
		}
		c.condstore = true
	}
	if err != nil {
		return err
	}
	op, silent, flags, err := parseStoreAction(p)
	if err != nil {
		return err
	}
	if c.sel.readOnly {
		return nof("READ-ONLY", "Mailbox is read-only")
	}
	if err := c.sync(false, false); err != nil {
		return err
	}
	idx, err := c.resolve(set, uidCmd)
	if err != nil {
		return err
	}
	var failed []uint32
	uids := c.uidsOf(idx)
	switch {
	case conditional && unchangedSince == 0:
		// UNCHANGEDSINCE 0 always fails (RFC 7162 §3.1.3); the store
		// takes 0 as "unconditional".
		failed = uids
	case len(idx) > 0:
		var updated []store.MessageMeta
		updated, failed, err = c.srv.st.StoreFlags(c.ctx, c.sel.mb.ID, uids, op, flags, unchangedSince)
		if err != nil {
			return err
		}
		c.applyOwnFlags(updated)
	}
	code := c.writeStoreResult(idx, failed, silent, uidCmd)
	return c.okUpdates(tag, code, c.cmd+" completed", uidCmd)
}

// writeStoreResult reports the new flags (unless .SILENT; MODSEQ even
// then, RFC 7162 §3.1.3) and returns the MODIFIED code for failures.
func (c *conn) writeStoreResult(idx []int, failed []uint32, silent, uidCmd bool) string {
	failedSet := map[uint32]bool{}
	for _, u := range failed {
		failedSet[u] = true
	}
	if !silent || c.condstore {
		for _, i := range idx {
			m := c.sel.msgs[i]
			if failedSet[m.uid] {
				continue
			}
			line := "* " + strconv.Itoa(i+1) + " FETCH ("
			if !silent {
				line += "FLAGS " + flagList(m.flags) + " "
			}
			if uidCmd {
				line += "UID " + strconv.FormatUint(uint64(m.uid), 10) + " "
			}
			if c.condstore {
				line += "MODSEQ (" + strconv.FormatUint(m.modseq, 10) + ") "
			}
			c.writeLine(strings.TrimSuffix(line, " ") + ")")
		}
	}
	code := ""
	if len(failed) > 0 {
		if uidCmd {
			code = "MODIFIED " + uidSetString(failed)
		} else {
			var seqs []uint32
			for _, u := range failed {
				if i, ok := c.sel.index(u); ok {
					seqs = append(seqs, uint32(i+1))
				}
			}
			code = "MODIFIED " + uidSetString(seqs)
		}
	}
	return code
}

func parseStoreAction(p *parser) (op store.FlagOp, silent bool, flags []string, err error) {
	op = store.FlagsReplace
	if p.take('+') {
		op = store.FlagsAdd
	} else if p.take('-') {
		op = store.FlagsRemove
	}
	if !p.takeWord("FLAGS") {
		return 0, false, nil, p.errorf("expected FLAGS")
	}
	silent = p.takeWord(".SILENT")
	if err = p.sp(); err != nil {
		return
	}
	if p.peek() == '(' {
		flags, err = p.flagList()
	} else {
		for {
			var f string
			if f, err = p.flag(); err != nil {
				return
			}
			flags = append(flags, f)
			if !p.take(' ') {
				break
			}
		}
	}
	if err == nil {
		err = p.end()
	}
	return
}
