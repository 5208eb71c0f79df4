package imapd

import (
	"errors"
	"io"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
)

// maxAppendMessages bounds the messages of one MULTIAPPEND (RFC 3502
// sets no limit). Small bodies wait in memory until the command ends, so
// this bounds what one session holds; beyond it the command fails with
// [LIMIT] (RFC 5530) and nothing is appended.
const maxAppendMessages = 100

// cmdAppend handles APPEND with one message or several (MULTIAPPEND, RFC
// 3502). Each literal is streamed into the store as it arrives
// (deliver.Spool) and the messages are filed together by
// deliver.AppendAll, all or none, durable before the OK (RFC 3501
// §6.3.11, APPENDUID from RFC 4315). A message refused mid-way (too big,
// over the limit) fails the whole command and appends nothing.
func (c *conn) cmdAppend(tag string, p *parser) error {
	var name string
	err := p.sp()
	if err == nil {
		name, err = c.mailboxArg(p)
	}
	if err == nil {
		err = p.sp()
	}
	if err != nil {
		return err
	}
	var refuse error
	if c.srv.spool == nil || c.srv.append == nil {
		refuse = nof("UNAVAILABLE", "APPEND unavailable")
	} else if _, err := c.srv.st.GetMailbox(c.ctx, c.acct.ID, name); errors.Is(err, store.ErrNoSuchMailbox) {
		refuse = nof("TRYCREATE", "No such mailbox")
	} else if err != nil {
		refuse = err
	}
	var items []deliver.AppendItem
	for {
		if len(items) == maxAppendMessages && refuse == nil {
			refuse = nof("LIMIT", "At most %d messages in one APPEND", maxAppendMessages)
		}
		it, err := c.appendMessage(p, refuse)
		if err != nil {
			return err
		}
		if it.err != nil {
			refuse = it.err
		}
		if refuse == nil {
			items = append(items, it.AppendItem)
		}
		if p.eol() {
			break
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	if refuse != nil {
		if errors.Is(refuse, store.ErrNoSuchMailbox) {
			return nof("TRYCREATE", "No such mailbox")
		}
		return refuse
	}
	ds, err := c.srv.append(c.ctx, c.acct.ID, name, items)
	if err != nil {
		if errors.Is(err, store.ErrNoSuchMailbox) {
			return nof("TRYCREATE", "No such mailbox")
		}
		return err
	}
	uids := make([]uint32, len(ds))
	for i, d := range ds {
		uids[i] = d.UID
	}
	c.dirty = c.dirty || (c.sel != nil && c.sel.mb.Name == name) // show it now, not at the next signal
	return c.ok(tag, "APPENDUID "+uitoa(ds[0].UIDValidity)+" "+uidSetString(uids), "APPEND completed")
}

// appendPart is one message of an APPEND as read: err is a refusal that
// fails the command once the client's data is consumed.
type appendPart struct {
	deliver.AppendItem
	err error
}

// appendMessage reads one "[flags] [date] literal" of an APPEND and
// spools the literal unless the command is already refused. The size is
// checked against APPENDLIMIT before any of it is read (RFC 7889): a
// synchronising literal is refused instead of "+"; a non-synchronising
// one past the limit closes the session, as the client is already
// sending it. A returned error ends the command at once (the tagged
// reply answers a synchronising literal the client waits to send).
func (c *conn) appendMessage(p *parser, refuse error) (appendPart, error) {
	var it appendPart
	var err error
	if p.peek() == '(' {
		if it.Flags, err = p.flagList(); err == nil {
			err = p.sp()
		}
	}
	if err == nil && p.peek() == '"' {
		if it.Date, err = p.dateTime(); err == nil {
			err = p.sp()
		}
	}
	if err != nil {
		return it, err
	}
	// RFC 6855 §4: UTF8 (literal8) carries a message with UTF-8 headers.
	utf8Data := p.takeWord("UTF8 (")
	n, sync, _, err := p.literalSpec(true)
	if err != nil {
		return it, err
	}
	if n > c.srv.cfg.MaxLiteralBytes {
		return it, &protoErr{code: "TOOBIG", msg: "Message larger than APPENDLIMIT", fatal: !sync}
	}
	if refuse != nil && sync {
		return it, refuse
	}
	if err := c.continueLiteral(sync); err != nil {
		return it, err
	}
	lr := &literalReader{io.LimitedReader{R: c.br, N: n}}
	if refuse == nil {
		it.Body, it.err = c.srv.spool(c.ctx, lr)
	}
	// Whatever happened, the rest of the literal is the client's and
	// must be consumed to stay in step.
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return it, err
	}
	if lr.N > 0 {
		return it, io.ErrUnexpectedEOF
	}
	if err := p.nextLine(); err != nil {
		return it, err
	}
	if utf8Data {
		if err := p.expect(')'); err != nil {
			return it, err
		}
	}
	return it, nil
}

// literalReader reads a literal of known length: the connection ending
// before all of it is io.ErrUnexpectedEOF, not the end of the message,
// so an APPEND cut short is not stored truncated.
type literalReader struct{ io.LimitedReader }

func (l *literalReader) Read(p []byte) (int, error) {
	n, err := l.LimitedReader.Read(p)
	if err == io.EOF && l.N > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
