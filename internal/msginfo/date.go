package msginfo

import (
	"net/mail"
	"strings"
	"time"
)

// dateLayouts are tried, after the weekday and comments are removed, on
// Date fields net/mail rejects: RFC 5322 §3.3 variants real mail has, plus
// ctime and ISO 8601 styles.
var dateLayouts = []string{
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04:05 MST",
	"2 Jan 2006 15:04:05 -07:00",
	"2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04 MST",
	"2 Jan 2006 15:04:05",
	"2 Jan 2006 15:04",
	"2 Jan 06 15:04:05 -0700",
	"2 Jan 06 15:04:05 MST",
	"2 Jan 06 15:04 -0700",
	"2 January 2006 15:04:05 -0700",
	"2 January 2006 15:04:05 MST",
	"2-Jan-2006 15:04:05 -0700",
	"Jan 2 15:04:05 2006",
	"Jan 2 15:04:05 MST 2006",
	"Jan 2 15:04:05 -0700 2006",
	"Jan 2 2006 15:04:05 -0700",
	"Jan 2, 2006 15:04:05 -0700",
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05 MST",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"2006/01/02 15:04:05 -0700",
	"02.01.2006 15:04:05 -0700",
}

// parseDate parses a Date field leniently; the zero time when it cannot.
func parseDate(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t
	}
	f := strings.Fields(stripComments(s))
	// Drop a weekday, with or without its comma ("Mon,", "Monday", "Mon.").
	if len(f) > 0 && isWeekday(strings.TrimRight(f[0], ",.")) {
		f = f[1:]
	}
	// Try the whole, then without one or two trailing words ("+0000 GMT",
	// "+0100 CET DST").
	for drop := 0; drop <= 2 && drop < len(f); drop++ {
		v := strings.Join(f[:len(f)-drop], " ")
		v = strings.ReplaceAll(v, ", ", " ")
		for _, l := range dateLayouts {
			if t, err := time.Parse(l, v); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

func isWeekday(s string) bool {
	if len(s) < 3 {
		return false
	}
	for _, d := range []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"} {
		if strings.HasPrefix(d, strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// stripComments removes RFC 5322 comments, e.g. "(CET)".
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
