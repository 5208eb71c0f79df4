package imapd

import (
	"errors"
	"io"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// cmdAppend streams the literal into deliver.Append, which makes it
// durable before the OK (RFC 3501 §6.3.11, APPENDUID from RFC 4315).
// The size is checked against APPENDLIMIT before any of it is read
// (RFC 7889): a synchronising literal is refused instead of "+"; a
// non-synchronising one past the limit closes the session, as the client
// is already sending it.
func (c *conn) cmdAppend(tag string, p *parser) error {
	var name string
	var flags []string
	var date time.Time
	err := p.sp()
	if err == nil {
		name, err = c.mailboxArg(p)
	}
	if err == nil {
		err = p.sp()
	}
	if err == nil && p.peek() == '(' {
		if flags, err = p.flagList(); err == nil {
			err = p.sp()
		}
	}
	if err == nil && p.peek() == '"' {
		if date, err = p.dateTime(); err == nil {
			err = p.sp()
		}
	}
	if err != nil {
		return err
	}
	// RFC 6855 §4: UTF8 (literal8) carries a message with UTF-8 headers.
	utf8Data := p.takeWord("UTF8 (")
	n, sync, _, err := p.literalSpec(true)
	if err != nil {
		return err
	}
	if n > c.srv.cfg.MaxLiteralBytes {
		return &protoErr{code: "TOOBIG", msg: "Message larger than APPENDLIMIT", fatal: !sync}
	}
	var refuse error
	if c.srv.append == nil {
		refuse = nof("UNAVAILABLE", "APPEND unavailable")
	} else if _, err := c.srv.st.GetMailbox(c.ctx, c.acct.ID, name); errors.Is(err, store.ErrNoSuchMailbox) {
		refuse = nof("TRYCREATE", "No such mailbox")
	} else if err != nil {
		refuse = err
	}
	if refuse != nil && sync {
		return refuse
	}
	if err := c.continueLiteral(sync); err != nil {
		return err
	}
	lr := &literalReader{io.LimitedReader{R: c.br, N: n}}
	var d store.Delivered
	if refuse == nil {
		d, err = c.srv.append(c.ctx, c.acct.ID, name, flags, date, lr)
		refuse = err
	}
	// Whatever happened, the rest of the literal is the client's and
	// must be consumed to stay in step.
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return err
	}
	if lr.N > 0 {
		return io.ErrUnexpectedEOF
	}
	if err := p.nextLine(); err != nil {
		return err
	}
	if utf8Data {
		if err := p.expect(')'); err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if refuse != nil {
		if errors.Is(refuse, store.ErrNoSuchMailbox) {
			return nof("TRYCREATE", "No such mailbox")
		}
		return refuse
	}
	c.dirty = c.dirty || (c.sel != nil && c.sel.mb.Name == name) // show it now, not at the next signal
	return c.ok(tag, "APPENDUID "+uitoa(d.UIDValidity)+" "+uitoa(d.UID), "APPEND completed")
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
