package smtpd

import (
	"bytes"
	"io"
	"os"
)

// spoolMemory is how much of a message is held in memory while it is
// authenticated; the rest goes to an unlinked temporary file.
const spoolMemory = 1 << 20

// spool holds a message body that must be read twice: once by the
// checks (DKIM hashes the whole body before the verdict is known), once
// into the store. The file, if any, is removed from its folder at once,
// so a crash leaves nothing behind.
type spool struct {
	mem bytes.Buffer
	f   *os.File
	n   int64 // bytes in f
}

// fill reads r to its end.
func (s *spool) fill(r io.Reader) error {
	if _, err := io.CopyN(&s.mem, r, spoolMemory); err != nil {
		if err == io.EOF {
			return nil
		}
		return err
	}
	f, err := os.CreateTemp("", "tern-mx-*")
	if err != nil {
		return err
	}
	os.Remove(f.Name())
	s.f = f
	s.n, err = io.Copy(f, r)
	return err
}

// reader reads the body from its start; each call starts anew.
func (s *spool) reader() io.Reader {
	m := bytes.NewReader(s.mem.Bytes())
	if s.f == nil {
		return m
	}
	return io.MultiReader(m, io.NewSectionReader(s.f, 0, s.n))
}

func (s *spool) close() {
	if s.f != nil {
		s.f.Close()
	}
}
