package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/store"
)

// Maildir info flags (the letters after ":2,"), in the ASCII order a
// file name lists them; P (passed) has no IMAP flag.
var maildirFlags = []struct {
	letter byte
	flag   string
}{
	{'D', store.FlagDraft},
	{'F', store.FlagFlagged},
	{'R', store.FlagAnswered},
	{'S', store.FlagSeen},
	{'T', store.FlagDeleted},
}

// flagsFromMaildirName returns the IMAP flags in a Maildir file name's
// info part ("1700000000.x.host:2,RS").
func flagsFromMaildirName(name string) []string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		return nil
	}
	var flags []string
	info := name[i+3:]
	for _, f := range maildirFlags {
		if strings.IndexByte(info, f.letter) >= 0 {
			flags = append(flags, f.flag)
		}
	}
	return flags
}

// maildirInfo is the ":2,..." suffix for flags; keywords have no letter.
func maildirInfo(flags []string) string {
	var b strings.Builder
	b.WriteString(":2,")
	for _, f := range maildirFlags {
		if slices.ContainsFunc(flags, func(g string) bool { return strings.EqualFold(g, f.flag) }) {
			b.WriteByte(f.letter)
		}
	}
	return b.String()
}

// Maildir++ folders are the directories ".A.B" of the root, "." being the
// hierarchy separator. A "." or "\" inside a mailbox name is written as
// "\2e" or "\5c", as Dovecot's listescape does.

// maildirFolder returns the Maildir++ directory name of a mailbox other
// than INBOX.
func maildirFolder(mailbox string) string {
	parts := strings.Split(mailbox, "/")
	for i, p := range parts {
		p = strings.ReplaceAll(p, `\`, `\5c`)
		parts[i] = strings.ReplaceAll(p, ".", `\2e`)
	}
	return "." + strings.Join(parts, ".")
}

// mailboxFromFolder is the inverse of maildirFolder.
func mailboxFromFolder(dir string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(dir, "."), ".")
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("folder %q: empty name part", dir)
		}
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			if p[j] == '\\' && j+2 < len(p) {
				if c, err := strconv.ParseUint(p[j+1:j+3], 16, 8); err == nil {
					b.WriteByte(byte(c))
					j += 2
					continue
				}
			}
			b.WriteByte(p[j])
		}
		parts[i] = b.String()
	}
	return strings.Join(parts, "/"), nil
}

// maildirFile is one message file to import.
type maildirFile struct {
	path  string
	size  int64
	mtime time.Time
}

// maildirBox is one folder of a Maildir++ tree.
type maildirBox struct {
	mailbox string
	files   []maildirFile
}

// scanMaildir lists the folders of the Maildir++ tree at root (root
// itself is INBOX) and their messages in new/ and cur/, oldest first.
func scanMaildir(root string) ([]maildirBox, error) {
	if !isMaildir(root) {
		return nil, fmt.Errorf("%s is not a Maildir (no cur/ or new/ in it)", root)
	}
	boxes := []maildirBox{{mailbox: "INBOX"}}
	dirs := []string{root}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || len(name) < 2 || name[0] != '.' || name == ".." || !isMaildir(filepath.Join(root, name)) {
			continue
		}
		mb, err := mailboxFromFolder(name)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(mb, "INBOX") {
			mb = "INBOX" // ".INBOX" (some layouts): the same mailbox
		}
		boxes = append(boxes, maildirBox{mailbox: mb})
		dirs = append(dirs, filepath.Join(root, name))
	}
	for i, dir := range dirs {
		for _, sub := range []string{"new", "cur"} {
			files, err := maildirFiles(filepath.Join(dir, sub))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			boxes[i].files = append(boxes[i].files, files...)
		}
		// Delivery order, as near as the files tell it: the name starts
		// with the delivery time, the mtime is it unless changed.
		slices.SortStableFunc(boxes[i].files, func(a, b maildirFile) int {
			if c := a.mtime.Compare(b.mtime); c != 0 {
				return c
			}
			return strings.Compare(filepath.Base(a.path), filepath.Base(b.path))
		})
	}
	// Parents before children, so names read in order.
	slices.SortStableFunc(boxes[1:], func(a, b maildirBox) int { return strings.Compare(a.mailbox, b.mailbox) })
	return boxes, nil
}

// isMaildir reports whether dir has cur/ or new/ (a writer may have made
// only the one it needed).
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

func maildirFiles(dir string) ([]maildirFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []maildirFile
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		files = append(files, maildirFile{path: filepath.Join(dir, e.Name()), size: fi.Size(), mtime: fi.ModTime()})
	}
	return files, nil
}
