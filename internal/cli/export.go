package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ternmail/tern/internal/store"
)

func cmdExport(e *env, args []string) error {
	fs, path := flags(e, "export", "[--config FILE] ADDRESS DIR",
		"Write an account's mail into DIR as a Maildir++ tree: INBOX in DIR/cur,\n"+
			"each other mailbox in DIR/.Name (\"/\" in names becomes \".\"). Flags are\n"+
			"kept in the \":2,\" suffix, the internal date as the file's mtime; keywords\n"+
			"are not kept. Messages are written as stored, with CRLF line ends. File\n"+
			"names are stable: exporting again names each message the same. DIR\n"+
			"must be new or empty.")
	if err := parseN(fs, args, 2); err != nil {
		return err
	}
	dir := fs.Arg(1)
	switch entries, err := os.ReadDir(dir); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty: export writes only into a new or empty directory", dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, _, err := openStore(*path)
	if err != nil {
		return err
	}
	defer st.Close()
	a, err := lookupAccount(ctx, st, fs.Arg(0))
	if err != nil {
		return err
	}
	x := &exporter{ctx: ctx, st: st, dir: dir, bar: newProgressBar(e.stderr)}
	err = x.run(a.ID)
	x.bar.finish()
	fmt.Fprintf(e.stdout, "exported %d messages (%s) in %d mailboxes of %s to %s\n", x.done, humanBytes(x.doneBytes), x.mailboxes, a.Address, dir)
	return err
}

// exporter writes one account as Maildir++.
type exporter struct {
	ctx context.Context
	st  store.Store
	dir string
	bar *progressBar

	total, totalBytes int64
	done, doneBytes   int64
	mailboxes         int
}

// exportBatch is how many messages are loaded at once.
const exportBatch = 200

func (x *exporter) run(accountID int64) error {
	mbs, err := x.st.ListMailboxes(x.ctx, accountID)
	if err != nil {
		return err
	}
	metas := make([][]store.MessageMeta, len(mbs))
	for i, mb := range mbs {
		if metas[i], err = x.st.ListMessages(x.ctx, mb.ID); err != nil {
			return fmt.Errorf("mailbox %s: %w", mb.Name, err)
		}
		for _, m := range metas[i] {
			x.total++
			x.totalBytes += m.Size
		}
	}
	for i, mb := range mbs {
		if err := x.mailbox(mb, metas[i]); err != nil {
			return fmt.Errorf("mailbox %s: %w", mb.Name, err)
		}
		x.mailboxes++
	}
	return nil
}

func (x *exporter) mailbox(mb store.Mailbox, metas []store.MessageMeta) error {
	dir := x.dir
	if mb.Name != "INBOX" {
		dir = filepath.Join(x.dir, maildirFolder(mb.Name))
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	if mb.Name != "INBOX" {
		// Maildir++ marks folders with an empty "maildirfolder" file.
		if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
			return err
		}
	}
	for len(metas) > 0 {
		n := min(len(metas), exportBatch)
		uids := make([]uint32, n)
		for i, m := range metas[:n] {
			uids[i] = m.UID
		}
		metas = metas[n:]
		msgs, err := x.st.GetMessages(x.ctx, mb.ID, uids)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := x.message(dir, mb, m); err != nil {
				return fmt.Errorf("UID %d: %w", m.UID, err)
			}
		}
	}
	return nil
}

// message writes one message into tmp/, then moves it into cur/ (the
// Maildir way, so cur/ never holds a partial file). The name is made of
// the internal date, UIDVALIDITY and UID: unique, and the same when
// exporting again.
func (x *exporter) message(dir string, mb store.Mailbox, m store.Message) error {
	name := fmt.Sprintf("%d.V%xU%x.tern,S=%d", m.InternalDate.Unix(), mb.UIDValidity, m.UID, m.Size)
	tmp := filepath.Join(dir, "tmp", name)
	if err := x.writeBlob(tmp, m.BlobID); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, m.InternalDate, m.InternalDate); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "cur", name+maildirInfo(m.Flags))); err != nil {
		return err
	}
	x.done++
	x.doneBytes += m.Size
	x.bar.counts(x.doneBytes, x.totalBytes, fmt.Sprintf("%d/%d messages  %s/%s",
		x.done, x.total, humanBytes(x.doneBytes), humanBytes(x.totalBytes)))
	return nil
}

func (x *exporter) writeBlob(path, blobID string) error {
	r, err := x.st.OpenBlob(x.ctx, blobID)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.NewSectionReader(r, 0, r.Size())); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
