package nanotime

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 26, 2, 30, 0, 123456789, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		got := Decode(Encode(tm))
		if !got.Equal(tm) || got.Location() != time.UTC {
			t.Errorf("Decode(Encode(%v)) = %v", tm, got)
		}
	}
	local := time.Date(2026, 11, 26, 3, 30, 0, 0, time.FixedZone("CET", 3600))
	if got := Decode(Encode(local)); !got.Equal(local) || got.Location() != time.UTC {
		t.Errorf("Decode(Encode(%v)) = %v, want the same instant in UTC", local, got)
	}
}

func TestZero(t *testing.T) {
	if n := Encode(time.Time{}); n != 0 {
		t.Errorf("Encode(zero) = %d, want 0", n)
	}
	if tm := Decode(0); !tm.IsZero() {
		t.Errorf("Decode(0) = %v, want the zero time", tm)
	}
}
