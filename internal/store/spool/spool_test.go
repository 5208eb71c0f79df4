package spool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ternmail/tern/internal/store"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name           string
		size, max, inl int64
		wantFile       bool
		wantErrTooBig  bool
	}{
		{name: "empty", size: 0, max: 100, inl: 10},
		{name: "inline", size: 10, max: 100, inl: 10},
		{name: "file", size: 11, max: 100, inl: 10, wantFile: true},
		{name: "at limit", size: 100, max: 100, inl: 10, wantFile: true},
		{name: "past limit", size: 101, max: 100, inl: 10, wantErrTooBig: true},
		{name: "past limit inline", size: 6, max: 5, inl: 10, wantErrTooBig: true},
		{name: "at limit inline", size: 5, max: 5, inl: 10},
		{name: "no limit", size: 1000, max: 0, inl: 10, wantFile: true},
		{name: "nothing inline", size: 1, max: -1, inl: 0, wantFile: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			body := bytes.Repeat([]byte("x"), int(tc.size))
			b, err := Read(context.Background(), bytes.NewReader(body), tc.max, Options{Inline: tc.inl, Dir: dir, Sync: true})
			if tc.wantErrTooBig {
				if !errors.Is(err, store.ErrTooBig) {
					t.Fatalf("err = %v, want ErrTooBig", err)
				}
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Errorf("left %d files behind", len(left))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.ID != sum(body) || b.Size != tc.size {
				t.Errorf("got ID %s size %d, want %s %d", b.ID, b.Size, sum(body), tc.size)
			}
			if !ValidID(b.ID) {
				t.Errorf("ID %q not valid", b.ID)
			}
			got := b.Data
			if tc.wantFile {
				if b.Data != nil || filepath.Dir(b.Path) != dir || !strings.HasPrefix(filepath.Base(b.Path), "spool-") {
					t.Fatalf("want a spool file in %s, got Path %q, %d bytes of Data", dir, b.Path, len(b.Data))
				}
				if got, err = os.ReadFile(b.Path); err != nil {
					t.Fatal(err)
				}
			} else if b.Path != "" || b.Data == nil {
				t.Fatalf("want data in memory, got Path %q, Data nil: %v", b.Path, b.Data == nil)
			}
			if !bytes.Equal(got, body) {
				t.Error("body differs")
			}
		})
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestReadStopsPastLimit(t *testing.T) {
	for _, inl := range []int64{10, 1000} {
		cr := &countingReader{r: iotest.OneByteReader(bytes.NewReader(make([]byte, 5000)))}
		_, err := Read(context.Background(), cr, 100, Options{Inline: inl, Dir: t.TempDir()})
		if !errors.Is(err, store.ErrTooBig) {
			t.Fatalf("inline %d: err = %v, want ErrTooBig", inl, err)
		}
		if cr.n > 101 {
			t.Errorf("inline %d: read %d bytes, want at most 101", inl, cr.n)
		}
	}
}

func TestReadErrors(t *testing.T) {
	boom := errors.New("boom")
	dir := t.TempDir()
	r := io.MultiReader(bytes.NewReader(make([]byte, 50)), iotest.ErrReader(boom))
	if _, err := Read(context.Background(), r, 0, Options{Inline: 10, Dir: dir}); !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left %d files behind", len(left))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Read(ctx, strings.NewReader("hello"), 0, Options{Inline: 10, Dir: dir}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}

	if _, err := Read(context.Background(), strings.NewReader("hello"), 0, Options{Inline: 1, Dir: filepath.Join(dir, "missing")}); err == nil {
		t.Error("no error for a missing directory")
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		sum(nil):                  true,
		strings.ToUpper(sum(nil)): false,
		sum(nil)[:63]:             false,
		sum(nil) + "0":            false,
		"../" + sum(nil)[3:]:      false,
		"":                        false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}
