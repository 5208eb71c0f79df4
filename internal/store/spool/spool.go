// Package spool reads a message body once, up to a size limit, hashing it
// with SHA-256 as it comes: a small body stays in memory, a larger one
// goes to a temporary file. What becomes of the file (renamed to its
// content address, or read into the database at delivery) is the store's
// business.
package spool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/ternmail/tern/internal/store"
)

// Options say where a body goes.
type Options struct {
	// Inline is the largest body kept in memory (Blob.Data); a larger one
	// is written to a temporary file (Blob.Path).
	Inline int64
	// Dir holds the temporary files, named "spool-*".
	Dir string
	// Sync fsyncs a temporary file before Read returns, for a store that
	// keeps the file itself as the durable copy.
	Sync bool
}

// noLimit stands for maxSize <= 0; one more byte must still fit an int64.
const noLimit = 1<<63 - 2

// Read reads a body of at most maxSize bytes (maxSize <= 0 means no
// limit): store.ErrTooBig past it, after reading no more than maxSize+1
// bytes. The Blob's ID is the body's lower-case hex SHA-256. A body of up
// to o.Inline bytes is returned in Data (never nil); a larger one in a
// closed temporary file at Path, which the caller owns. Reading stops
// when ctx ends.
func Read(ctx context.Context, r io.Reader, maxSize int64, o Options) (*store.Blob, error) {
	limit := maxSize
	if limit <= 0 {
		limit = noLimit
	}
	// Never read past maxSize+1: one byte more is enough to know the body
	// is too big.
	lr := &ctxReader{ctx: ctx, r: io.LimitReader(r, limit+1)}
	h := sha256.New()
	// Read up to one byte past what may stay in memory; ReadAll grows the
	// buffer as data comes, so a small message does not pay for a
	// buffer of the inline limit.
	small := min(o.Inline, limit)
	head, err := io.ReadAll(io.LimitReader(lr, small+1))
	if err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	if int64(len(head)) <= small {
		h.Write(head)
		if head == nil {
			head = []byte{}
		}
		return &store.Blob{ID: hex.EncodeToString(h.Sum(nil)), Size: int64(len(head)), Data: head}, nil
	}
	if small == limit {
		return nil, fmt.Errorf("spool: %w", store.ErrTooBig)
	}
	return toFile(head, lr, h, limit, o)
}

// toFile writes head and the rest of r to a temporary file.
func toFile(head []byte, r io.Reader, h hash.Hash, limit int64, o Options) (*store.Blob, error) {
	tmp, err := os.CreateTemp(o.Dir, "spool-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := io.MultiWriter(tmp, h)
	if _, err := w.Write(head); err != nil {
		return nil, fmt.Errorf("spool: write: %w", err)
	}
	rest, err := io.Copy(w, r)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	size := int64(len(head)) + rest
	if size > limit {
		return nil, fmt.Errorf("spool: %w", store.ErrTooBig)
	}
	if o.Sync {
		if err := tmp.Sync(); err != nil {
			return nil, fmt.Errorf("spool: fsync: %w", err)
		}
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("spool: close: %w", err)
	}
	keep = true
	return &store.Blob{ID: hex.EncodeToString(h.Sum(nil)), Size: size, Path: tmp.Name()}, nil
}

// ValidID reports whether id has the form of a Blob ID: 64 lower-case
// hex digits.
func ValidID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ctxReader fails reads once its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
