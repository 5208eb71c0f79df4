package pop3d

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"time"
)

// streamBufs are the pooled buffers of one RETR or TOP.
type streamBufs struct {
	read []byte
	w    *bufio.Writer
}

// sendMessage answers RETR (lines < 0) or TOP (lines >= 0) with the stored
// body of m, dot-stuffed (RFC 1939 §3). It reports whether the session
// must close: once the +OK line is out, a failure to read the body cannot
// be reported any other way than by dropping the connection, so the
// client never takes a truncated message for a whole one.
func (ss *session) sendMessage(m *message, okText string, lines int64) (quit bool) {
	got, err := ss.s.st.GetMessages(ss.ctx, ss.drop.mailboxID, []uint32{m.uid})
	if err != nil {
		ss.log.Error("pop3 get message", "uid", m.uid, "err", err)
		ss.err("[SYS/TEMP] cannot read message, try again later")
		return false
	}
	if len(got) == 0 {
		ss.err("message was removed by another session")
		return false
	}
	blob, err := ss.s.st.OpenBlob(ss.ctx, got[0].BlobID)
	if err != nil {
		ss.log.Error("pop3 open blob", "uid", m.uid, "err", err)
		ss.err("[SYS/TEMP] cannot read message, try again later")
		return false
	}
	defer blob.Close()

	// Replies still buffered for earlier pipelined commands go first.
	if err := ss.flush(); err != nil {
		return true
	}
	bufs := ss.s.bigBufs.Get().(*streamBufs)
	defer ss.s.bigBufs.Put(bufs)
	bufs.w.Reset(ss.conn)
	defer bufs.w.Reset(nil)

	fmt.Fprintf(bufs.w, "+OK %s\r\n", okText)
	dw := dotWriter{w: bufs.w, bol: true, lines: lines}
	size := blob.Size()
	for off := int64(0); off < size && !dw.done; {
		ss.raw.SetWriteDeadline(time.Now().Add(ss.s.cfg.IdleTimeout))
		n, err := blob.ReadAt(bufs.read[:min(int64(len(bufs.read)), size-off)], off)
		dw.write(bufs.read[:n])
		off += int64(n)
		if err != nil && !(err == io.EOF && off == size) {
			ss.log.Error("pop3 read blob", "uid", m.uid, "offset", off, "err", err)
			return true
		}
	}
	dw.end()
	ss.raw.SetWriteDeadline(time.Now().Add(ss.s.cfg.IdleTimeout))
	if err := bufs.w.Flush(); err != nil {
		ss.log.Debug("pop3 write", "err", err)
		return true
	}
	return false
}

// dotWriter writes a message as a multi-line response: a "." is doubled at
// the start of every line (RFC 1939 §3); every other byte goes out as
// stored. With lines >= 0 it stops after the header, the blank line and
// that many body lines (TOP).
type dotWriter struct {
	w     *bufio.Writer
	bol   bool  // at the beginning of a line
	lines int64 // body lines still wanted, or < 0 for all
	body  bool  // past the blank line ending the header
	blank bool  // the current line has nothing but CRs so far
	done  bool
}

func (d *dotWriter) write(p []byte) {
	for len(p) > 0 {
		if d.bol {
			if d.body && d.lines == 0 {
				d.done = true
				return
			}
			if p[0] == '.' {
				d.w.WriteByte('.')
			}
			d.blank = true
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i+1]
		}
		if d.lines >= 0 && !d.body && d.blank {
			content := seg
			if i >= 0 {
				content = seg[:len(seg)-1]
			}
			d.blank = len(bytes.Trim(content, "\r")) == 0
		}
		d.w.Write(seg)
		d.bol = i >= 0
		if d.bol && d.lines >= 0 {
			if d.body {
				d.lines--
			} else if d.blank {
				d.body = true
			}
		}
		p = p[len(seg):]
	}
}

// end closes the response: a CRLF if the message did not end with a line
// ending, then the terminating ".".
func (d *dotWriter) end() {
	if !d.bol {
		d.w.WriteString("\r\n")
	}
	d.w.WriteString(".\r\n")
}
