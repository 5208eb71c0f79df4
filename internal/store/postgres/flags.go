package postgres

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ternmail/tern/internal/store"
)

// System flags are kept as a bitmask, with the same bits and keyword form
// as store/sqlite, so "tern migrate" copies the columns unchanged. The
// order of this table is the order they are reported in (alphabetical, as
// most servers do).
var systemFlags = []struct {
	name string
	bit  int64
}{
	{store.FlagAnswered, 1 << 0},
	{store.FlagDeleted, 1 << 1},
	{store.FlagDraft, 1 << 2},
	{store.FlagFlagged, 1 << 3},
	{store.FlagSeen, 1 << 4},
}

const (
	bitSeen    = 1 << 4
	bitDeleted = 1 << 1
)

// flagSet is a message's flags in stored form.
type flagSet struct {
	bits     int64
	keywords []string // first spelling seen, no case-insensitive duplicates
}

// parseFlags turns flags as a client wrote them into a flagSet: system
// flags matched case-insensitively, \Recent dropped (it is a session
// property, RFC 3501 §2.3.2, never stored), keywords deduplicated
// case-insensitively keeping the first spelling.
func parseFlags(flags []string) (flagSet, error) {
	var fs flagSet
outer:
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			if strings.EqualFold(f, `\Recent`) {
				continue
			}
			for _, sf := range systemFlags {
				if strings.EqualFold(f, sf.name) {
					fs.bits |= sf.bit
					continue outer
				}
			}
			return fs, fmt.Errorf("%w: unknown system flag %q", store.ErrInvalid, f)
		}
		if !validKeyword(f) {
			return fs, fmt.Errorf("%w: bad keyword %q", store.ErrInvalid, f)
		}
		fs.addKeyword(f)
	}
	return fs, nil
}

// validKeyword accepts an IMAP atom (RFC 3501 §9 atom-char), which also
// keeps the space-separated stored form unambiguous.
func validKeyword(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

func (fs *flagSet) hasKeyword(k string) bool {
	for _, have := range fs.keywords {
		if strings.EqualFold(have, k) {
			return true
		}
	}
	return false
}

func (fs *flagSet) addKeyword(k string) {
	if !fs.hasKeyword(k) {
		fs.keywords = append(fs.keywords, k)
	}
}

// apply combines the flags present with the given ones.
func (fs flagSet) apply(op store.FlagOp, arg flagSet) flagSet {
	switch op {
	case store.FlagsAdd:
		out := flagSet{bits: fs.bits | arg.bits, keywords: append([]string(nil), fs.keywords...)}
		for _, k := range arg.keywords {
			out.addKeyword(k)
		}
		return out
	case store.FlagsRemove:
		out := flagSet{bits: fs.bits &^ arg.bits}
		for _, k := range fs.keywords {
			if !arg.hasKeyword(k) {
				out.keywords = append(out.keywords, k)
			}
		}
		return out
	default: // FlagsReplace
		out := flagSet{bits: arg.bits}
		for _, k := range arg.keywords {
			// Keep the spelling already on the message.
			kept := k
			for _, have := range fs.keywords {
				if strings.EqualFold(have, k) {
					kept = have
				}
			}
			out.keywords = append(out.keywords, kept)
		}
		return out
	}
}

// equal compares two flag sets, keywords case-insensitively.
func (fs flagSet) equal(o flagSet) bool {
	if fs.bits != o.bits || len(fs.keywords) != len(o.keywords) {
		return false
	}
	for _, k := range fs.keywords {
		if !o.hasKeyword(k) {
			return false
		}
	}
	return true
}

// stored is the keywords column: sorted so equal sets store equally.
func (fs flagSet) stored() string {
	sortKeywords(fs.keywords)
	return strings.Join(fs.keywords, " ")
}

func loadFlags(bits int64, keywords string) flagSet {
	return flagSet{bits: bits, keywords: strings.Fields(keywords)}
}

// list is the reported form: system flags first, then keywords, sorted.
// Keywords are kept sorted (stored sorts them, loadFlags reads them so),
// which spares a sort per message when listing a big mailbox.
func (fs flagSet) list() []string {
	out := make([]string, 0, 5+len(fs.keywords))
	for _, sf := range systemFlags {
		if fs.bits&sf.bit != 0 {
			out = append(out, sf.name)
		}
	}
	return append(out, fs.keywords...)
}

func sortKeywords(kw []string) {
	sort.Slice(kw, func(i, j int) bool {
		a, b := strings.ToLower(kw[i]), strings.ToLower(kw[j])
		if a != b {
			return a < b
		}
		return kw[i] < kw[j]
	})
}
