// Package flagset is the stored form of IMAP message flags shared by the
// store implementations: system flags as a bitmask, keywords as a
// space-separated list keeping their first spelling. Both stores use the
// same form, so "tern migrate" copies the columns unchanged.
package flagset

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ternmail/tern/internal/store"
)

// System flags are kept as a bitmask; the order of this table is the
// order they are reported in (alphabetical, as most servers do).
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
	BitSeen    = 1 << 4
	BitDeleted = 1 << 1
)

// Set is a message's flags in stored form.
type Set struct {
	Bits     int64
	Keywords []string // first spelling seen, no case-insensitive duplicates
}

// Parse turns flags as a client wrote them into a Set: system
// flags matched case-insensitively, \Recent dropped (it is a session
// property, RFC 3501 §2.3.2, never stored), keywords deduplicated
// case-insensitively keeping the first spelling.
func Parse(flags []string) (Set, error) {
	var fs Set
outer:
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			if strings.EqualFold(f, `\Recent`) {
				continue
			}
			for _, sf := range systemFlags {
				if strings.EqualFold(f, sf.name) {
					fs.Bits |= sf.bit
					continue outer
				}
			}
			return fs, fmt.Errorf("%w: unknown system flag %q", store.ErrInvalid, f)
		}
		if !validKeyword(f) {
			return fs, fmt.Errorf("%w: bad keyword %q", store.ErrInvalid, f)
		}
		fs.AddKeyword(f)
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

func (fs *Set) HasKeyword(k string) bool {
	for _, have := range fs.Keywords {
		if strings.EqualFold(have, k) {
			return true
		}
	}
	return false
}

func (fs *Set) AddKeyword(k string) {
	if !fs.HasKeyword(k) {
		fs.Keywords = append(fs.Keywords, k)
	}
}

// apply combines the flags present with the given ones.
func (fs Set) Apply(op store.FlagOp, arg Set) Set {
	switch op {
	case store.FlagsAdd:
		out := Set{Bits: fs.Bits | arg.Bits, Keywords: append([]string(nil), fs.Keywords...)}
		for _, k := range arg.Keywords {
			out.AddKeyword(k)
		}
		return out
	case store.FlagsRemove:
		out := Set{Bits: fs.Bits &^ arg.Bits}
		for _, k := range fs.Keywords {
			if !arg.HasKeyword(k) {
				out.Keywords = append(out.Keywords, k)
			}
		}
		return out
	default: // FlagsReplace
		out := Set{Bits: arg.Bits}
		for _, k := range arg.Keywords {
			// Keep the spelling already on the message.
			kept := k
			for _, have := range fs.Keywords {
				if strings.EqualFold(have, k) {
					kept = have
				}
			}
			out.Keywords = append(out.Keywords, kept)
		}
		return out
	}
}

// equal compares two flag sets, keywords case-insensitively.
func (fs Set) Equal(o Set) bool {
	if fs.Bits != o.Bits || len(fs.Keywords) != len(o.Keywords) {
		return false
	}
	for _, k := range fs.Keywords {
		if !o.HasKeyword(k) {
			return false
		}
	}
	return true
}

// stored is the keywords column: sorted so equal sets store equally.
func (fs Set) Stored() string {
	sortKeywords(fs.Keywords)
	return strings.Join(fs.Keywords, " ")
}

func Load(bits int64, keywords string) Set {
	return Set{Bits: bits, Keywords: strings.Fields(keywords)}
}

// list is the reported form: system flags first, then keywords, sorted.
// Keywords are kept sorted (stored sorts them, Load reads them so),
// which spares a sort per message when listing a big mailbox.
func (fs Set) List() []string {
	out := make([]string, 0, 5+len(fs.Keywords))
	for _, sf := range systemFlags {
		if fs.Bits&sf.bit != 0 {
			out = append(out, sf.name)
		}
	}
	return append(out, fs.Keywords...)
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
