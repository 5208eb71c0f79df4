package imapd

import (
	"bytes"
)

// cmdIdle waits for DONE (RFC 2177), reporting mailbox changes as they
// are committed. A goroutine reads the DONE line; this one alone writes.
func (c *conn) cmdIdle(tag string, p *parser) error {
	if err := p.end(); err != nil {
		return err
	}
	c.writeLine("+ idling")
	if err := c.flush(); err != nil {
		return err
	}
	done := make(chan error, 1)
	var line []byte
	c.setIdle(true)
	defer c.setIdle(false)
	go func() {
		l, err := c.readLine()
		line = l
		done <- err
	}()
	// Until DONE arrives the reader goroutine owns c.br: every other way
	// out ends the session.
	for {
		if err := c.sync(true, false); err != nil {
			c.log.Error("idle", "err", err)
			c.bye("Internal error")
			return errStop
		}
		if err := c.flush(); err != nil {
			return errStop
		}
		select {
		case <-c.notify:
			c.dirty = true
		case err := <-done:
			if err != nil {
				c.readFailed(err)
				return errStop
			}
			if !bytes.EqualFold(line, []byte("DONE")) {
				return badf("Expected DONE")
			}
			return c.ok(tag, "", "IDLE terminated")
		case <-c.srv.done:
			c.bye("Server shutting down")
			return errStop
		}
	}
}
