package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
)

const importUsage = "Usage:\n  tern import mbox [--config FILE] [--mailbox NAME] ADDRESS FILE\n  tern import maildir [--config FILE] ADDRESS DIR\n"

func cmdImport(e *env, args []string) error {
	sub, rest, err := splitSub(args, "mbox", "maildir")
	if err != nil {
		fmt.Fprint(e.stderr, importUsage)
		return err
	}
	if sub == "mbox" {
		fs, path := flags(e, "import mbox", "[--config FILE] [--mailbox NAME] ADDRESS FILE",
			"Import an mbox file (mboxrd or mboxo) into an account's INBOX, or the\n"+
				"mailbox NAME (created if missing), keeping the order. The date of each\n"+
				"\"From \" line becomes the message's internal date; Status: and X-Status:\n"+
				"fields give \\Seen, \\Answered, \\Flagged, \\Draft and \\Deleted. Lines end in\n"+
				"CRLF once stored. Each message is delivered like an IMAP APPEND (quota,\n"+
				"limits.max_message_bytes); one that fails is reported and skipped.")
		mailbox := fs.String("mailbox", "INBOX", "the mailbox `NAME` to import into")
		if err := parseN(fs, rest, 2); err != nil {
			return err
		}
		return runImport(e, *path, fs.Arg(0), func(im *importer) error { return im.mbox(fs.Arg(1), *mailbox) })
	}
	fs, path := flags(e, "import maildir", "[--config FILE] ADDRESS DIR",
		"Import a Maildir (cur/ and new/) into an account's INBOX, and its Maildir++\n"+
			"folders (.Folder.Sub) into mailboxes (Folder/Sub), created if missing.\n"+
			"The file's mtime becomes the internal date; the \":2,\" flags S, R, F, T, D\n"+
			"become \\Seen, \\Answered, \\Flagged, \\Deleted, \\Draft. Lines end in CRLF once\n"+
			"stored. Each message is delivered like an IMAP APPEND (quota,\n"+
			"limits.max_message_bytes); one that fails is reported and skipped.")
	if err := parseN(fs, rest, 2); err != nil {
		return err
	}
	return runImport(e, *path, fs.Arg(0), func(im *importer) error { return im.maildir(fs.Arg(1)) })
}

// importer files messages into one account through deliver.Append, the
// path IMAP APPEND takes, and counts what it did.
type importer struct {
	ctx     context.Context
	st      store.Store
	dl      *deliver.Deliverer
	account store.Account
	bar     *progressBar
	known   map[string]bool // mailboxes known to exist

	total, totalBytes int64 // what the source holds
	done, doneBytes   int64 // what was read of it
	imported, failed  int64
	storedBytes       int64 // of the messages imported
	created           []string
}

func runImport(e *env, path, address string, source func(*importer) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, cfg, err := openStore(path)
	if err != nil {
		return err
	}
	defer st.Close()
	a, err := lookupAccount(ctx, st, address)
	if err != nil {
		return err
	}
	im := &importer{
		ctx: ctx, st: st, account: a, bar: newProgressBar(e.stderr), known: map[string]bool{},
		dl: deliver.New(st, deliver.Config{MaxMessageBytes: cfg.Limits.MaxMessageBytes}, slog.New(slog.DiscardHandler)),
	}
	err = source(im)
	im.bar.finish()
	if err != nil && im.done == 0 {
		return err // nothing was tried: no summary
	}
	for _, mb := range im.created {
		fmt.Fprintf(e.stdout, "created mailbox %s\n", mb)
	}
	fmt.Fprintf(e.stdout, "imported %d of %d messages (%s) into %s\n", im.imported, im.total, humanBytes(im.storedBytes), a.Address)
	if err != nil {
		return fmt.Errorf("import stopped: %w", err)
	}
	if im.failed > 0 {
		return fmt.Errorf("%d message(s) could not be imported (see above)", im.failed)
	}
	return nil
}

// ensureMailbox creates mailbox unless it exists.
func (im *importer) ensureMailbox(name string) error {
	if im.known[name] {
		return nil
	}
	_, err := im.st.GetMailbox(im.ctx, im.account.ID, name)
	if errors.Is(err, store.ErrNoSuchMailbox) || errors.Is(err, store.ErrNotFound) {
		if _, err = im.st.CreateMailbox(im.ctx, im.account.ID, name, ""); err == nil {
			im.created = append(im.created, name)
		}
	}
	if err != nil {
		return fmt.Errorf("mailbox %q: %w", name, err)
	}
	im.known[name] = true
	return nil
}

// add files one message and records the outcome.
func (im *importer) add(what, mailbox string, flags []string, date time.Time, body io.Reader) error {
	return im.record(what, im.appendCRLF(mailbox, flags, date, body))
}

// appendCRLF files body with bare LFs made CRLF and counts its stored size.
func (im *importer) appendCRLF(mailbox string, flags []string, date time.Time, body io.Reader) error {
	cr := &countingReader{r: newCRLFReader(body)}
	_, err := im.dl.Append(im.ctx, im.account.ID, mailbox, flags, date, cr)
	if err == nil {
		im.storedBytes += cr.n
	}
	return err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// record counts one message. A message that failed is reported and
// counted; only a cancelled import or a full disk stops the whole import.
func (im *importer) record(what string, err error) error {
	im.done++
	if err == nil {
		im.imported++
		im.progress()
		return nil
	}
	if im.ctx.Err() != nil {
		return im.ctx.Err()
	}
	if errors.Is(err, store.ErrFull) {
		return err
	}
	im.failed++
	if errors.Is(err, store.ErrTooBig) {
		err = errors.New("larger than limits.max_message_bytes")
	}
	im.bar.printf("%s: %v\n", what, err)
	im.progress()
	return nil
}

func (im *importer) progress() {
	im.bar.counts(im.doneBytes, im.totalBytes, fmt.Sprintf("%d/%d messages  %s/%s",
		im.done, im.total, humanBytes(im.doneBytes), humanBytes(im.totalBytes)))
}

// mbox imports the messages of the mbox file at path into mailbox.
func (im *importer) mbox(path, mailbox string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	// A first pass counts the messages for the progress bar; it reads the
	// file only, which is quick next to storing each message durably.
	mr, err := newMboxReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for {
		if _, err := mr.next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		im.total++
	}
	im.totalBytes = fi.Size()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := im.ensureMailbox(mailbox); err != nil {
		return err
	}
	im.progress()
	if mr, err = newMboxReader(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for n := 1; ; n++ {
		msg, err := mr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		flags, body := statusFlags(msg.Body)
		err = im.appendCRLF(mailbox, flags, fromLineDate(msg.From), body)
		// A refused message may be partly unread: skip it, so the bytes
		// done are where the next message starts.
		if _, cerr := io.Copy(io.Discard, msg.Body); cerr != nil {
			return fmt.Errorf("%s: %w", path, cerr)
		}
		im.doneBytes = mr.read
		if err := im.record(fmt.Sprintf("%s: message %d (at byte %d)", path, n, msg.Offset), err); err != nil {
			return err
		}
	}
}

// maildir imports the Maildir++ tree at root.
func (im *importer) maildir(root string) error {
	boxes, err := scanMaildir(root)
	if err != nil {
		return err
	}
	for _, b := range boxes {
		for _, f := range b.files {
			im.total++
			im.totalBytes += f.size
		}
	}
	im.progress()
	for _, b := range boxes {
		if err := im.ensureMailbox(b.mailbox); err != nil {
			if im.ctx.Err() != nil {
				return im.ctx.Err()
			}
			// A folder whose name the store refuses: skip its messages.
			im.bar.printf("%v: %d message(s) skipped\n", err, len(b.files))
			for _, f := range b.files {
				im.done++
				im.failed++
				im.doneBytes += f.size
			}
			im.progress()
			continue
		}
		for _, f := range b.files {
			if err := im.maildirFile(b.mailbox, f); err != nil {
				return err
			}
		}
	}
	return nil
}

func (im *importer) maildirFile(mailbox string, f maildirFile) error {
	im.doneBytes += f.size
	r, err := os.Open(f.path)
	if err != nil {
		return im.record(f.path, err)
	}
	defer r.Close()
	return im.add(f.path, mailbox, flagsFromMaildirName(filepath.Base(f.path)), f.mtime, r)
}
