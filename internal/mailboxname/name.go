// Package mailboxname holds the rules a mailbox name must follow, shared
// by every door that creates or renames mailboxes, so that a name one
// door accepts is one every other door accepts too. The store checks
// less (it only needs names it can compare); these rules bound what
// clients may make.
//
// The rules are those of imapd's CREATE and RENAME: valid UTF-8, no
// control characters (RFC 3501 §5.1 lets servers refuse them), no LIST
// wildcards "*" and "%" (RFC 3501 §6.3.8), no empty hierarchy level, at
// most MaxBytes bytes and MaxDepth levels.
package mailboxname

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/ternmail/tern/internal/store"
)

// Sep is the hierarchy separator every door announces (LIST "/").
const Sep = "/"

// Bounds on a whole name, parents included.
const (
	MaxBytes = 255
	MaxDepth = 16
)

// Errors returned by Check; a door maps them to its own wording.
var (
	ErrEmpty      = errors.New("empty mailbox name")
	ErrTooLong    = errors.New("mailbox name too long")
	ErrNotUTF8    = errors.New("mailbox name is not UTF-8")
	ErrTooDeep    = errors.New("mailbox hierarchy too deep")
	ErrBadChar    = errors.New("invalid character in mailbox name")
	ErrEmptyLevel = errors.New("empty hierarchy level in mailbox name")
)

// Canonical spells INBOX and its children's first level in upper case:
// the name INBOX is case-insensitive (RFC 3501 §5.1).
func Canonical(name string) string {
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || name[5] == '/') {
		return "INBOX" + name[5:]
	}
	return name
}

// Check returns nil if name may be created or renamed to.
func Check(name string) error {
	switch {
	case name == "":
		return ErrEmpty
	case len(name) > MaxBytes:
		return ErrTooLong
	case !utf8.ValidString(name):
		return ErrNotUTF8
	case strings.Count(name, Sep) >= MaxDepth:
		return ErrTooDeep
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '*' || r == '%' {
			return ErrBadChar
		}
	}
	for _, level := range strings.Split(name, Sep) {
		if level == "" {
			return ErrEmptyLevel
		}
	}
	return nil
}

// Parent returns the name of the level above name, or "" at the top.
func Parent(name string) string {
	if i := strings.LastIndex(name, Sep); i >= 0 {
		return name[:i]
	}
	return ""
}

// Within reports whether name is ancestor itself or below it.
func Within(name, ancestor string) bool {
	return name == ancestor || strings.HasPrefix(name, ancestor+Sep)
}

// Creator is the store call CreateParents needs.
type Creator interface {
	CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (store.Mailbox, error)
}

// CreateParents creates the levels above name that do not exist yet, as
// CREATE should (RFC 3501 §6.3.3) and RENAME may (§6.3.5), so that every
// level of a hierarchy is a mailbox of its own.
func CreateParents(ctx context.Context, st Creator, accountID int64, name string) error {
	for i := range len(name) {
		if name[i] == Sep[0] {
			if _, err := st.CreateMailbox(ctx, accountID, name[:i], ""); err != nil && !errors.Is(err, store.ErrExists) {
				return err
			}
		}
	}
	return nil
}
