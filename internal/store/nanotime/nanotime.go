// Package nanotime is how the stores keep a time in the database: Unix
// nanoseconds in a 64-bit integer, the zero time as 0, read back in UTC.
// It round-trips exactly, and because SQLite and PostgreSQL share it, a
// SQLite data directory's rows copy into PostgreSQL unchanged.
package nanotime

import "time"

// Encode returns t as stored: Unix nanoseconds, or 0 for the zero time.
func Encode(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Decode returns the time Encode stored as n, in UTC.
func Decode(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
