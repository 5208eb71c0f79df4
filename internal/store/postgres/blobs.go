package postgres

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/spool"
)

// Bodies live in the blobs table, content-addressed by SHA-256 and
// counted by reference. Spool only reads a body and hashes it: nothing is
// written to the database until Deliver, whose transaction inserts the
// body (or, for a body already stored, only adds references). So a body
// is durable exactly when the delivery referencing it is.

// Spool implements store.Store. Bodies up to inlineAt bytes stay in
// memory; larger ones wait in a temporary file (not fsync'ed: the
// database row is the durable copy), removed once delivered or by
// CollectGarbage. maxSize <= 0 means no limit.
func (s *Store) Spool(ctx context.Context, r io.Reader, maxSize int64) (*store.Blob, error) {
	b, err := spool.Read(ctx, r, maxSize, spool.Options{Inline: s.inlineAt, Dir: s.spoolDir})
	return b, classify(err)
}

// sqlAddBlob records references to a body: the conflict on its hash
// adds them to a body stored already (or inserted first by a concurrent
// delivery of the same body); otherwise the body is inserted with its
// data. The data goes with every delivery: a second delivery of a body
// is rare enough that a look-up first would cost more round trips than
// the bytes it saves.
const sqlAddBlob = `INSERT INTO blobs (sha, size, refcount, data, info) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (sha) DO UPDATE SET refcount = blobs.refcount + excluded.refcount, info = coalesce(blobs.info, excluded.info)`

// blobData returns the body of a spooled blob, from memory or from its
// spool file, before the delivery's transaction.
func (s *Store) blobData(ctx context.Context, b *store.Blob) ([]byte, error) {
	if b == nil || !spool.ValidID(b.ID) {
		return nil, fmt.Errorf("%w: bad blob", store.ErrInvalid)
	}
	data := b.Data
	if b.Path != "" {
		var err error
		if data, err = os.ReadFile(b.Path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Delivered before (its file went at that commit): the
				// body is stored, if not collected since.
				return s.storedBody(ctx, b)
			}
			return nil, fmt.Errorf("blob %s: %w", b.ID, err)
		}
	}
	if int64(len(data)) != b.Size {
		return nil, fmt.Errorf("%w: blob data length %d, size %d", store.ErrInvalid, len(data), b.Size)
	}
	if data == nil {
		data = []byte{} // bytea NOT NULL
	}
	return data, nil
}

// storedBody reads a body back from the database.
func (s *Store) storedBody(ctx context.Context, b *store.Blob) ([]byte, error) {
	sha, _ := hex.DecodeString(b.ID)
	var data []byte
	err := s.pool.QueryRow(ctx, `SELECT data FROM blobs WHERE sha = $1`, sha).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("blob %s: spool file and stored body gone: %w", b.ID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", b.ID, err)
	}
	return data, nil
}

// releaseMessages drops the blob references and account usage of the
// messages selected by where (a condition on messages m), before the
// caller deletes them. The caller holds the accounts' and mailboxes'
// locks; the blobs' are taken here, in hash order.
func (w *wtx) releaseMessages(where string, args ...any) error {
	_, err := w.exec(`SELECT 1 FROM blobs WHERE id IN (SELECT m.blob_id FROM messages m WHERE `+where+`)
		ORDER BY sha FOR NO KEY UPDATE`, args...)
	if err != nil {
		return fmt.Errorf("lock blobs: %w", err)
	}
	_, err = w.exec(`UPDATE blobs SET refcount = refcount - r.n
		FROM (SELECT m.blob_id AS id, count(*) AS n FROM messages m WHERE `+where+` GROUP BY m.blob_id) AS r
		WHERE blobs.id = r.id`, args...)
	if err != nil {
		return fmt.Errorf("release blobs: %w", err)
	}
	_, err = w.exec(`UPDATE accounts SET used_bytes = used_bytes - u.n
		FROM (SELECT b.account_id AS id, sum(m.size) AS n FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
			WHERE `+where+` GROUP BY b.account_id) AS u
		WHERE accounts.id = u.id`, args...)
	if err != nil {
		return fmt.Errorf("release quota: %w", err)
	}
	return nil
}

// blobChunk is how much of a large body one query reads.
const blobChunk = 256 << 10

// readTimeout bounds one chunk read of a large body.
const readTimeout = time.Minute

// OpenBlob implements store.Store. A small body is read whole; a large
// one is read in chunks as ReadAt asks (substring over an uncompressed
// TOAST value reads only the chunks it covers).
func (s *Store) OpenBlob(ctx context.Context, id string) (store.BlobReader, error) {
	if !spool.ValidID(id) {
		return nil, fmt.Errorf("open blob: %w", store.ErrNotFound)
	}
	sha, _ := hex.DecodeString(id)
	var (
		row, size int64
		data      []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT id, size, CASE WHEN size <= $2 THEN data END FROM blobs WHERE sha = $1`,
		sha, s.inlineAt).Scan(&row, &size, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("open blob %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", id, err)
	}
	if size <= s.inlineAt {
		return &memBlob{bytes.NewReader(data)}, nil
	}
	return &dbBlob{s: s, id: row, sha: id, size: size, chunk: -1}, nil
}

type memBlob struct{ *bytes.Reader }

func (m *memBlob) Close() error { return nil }

// dbBlob reads a large body from the database, keeping the last chunk
// read: sequential small reads cost one query per chunk.
type dbBlob struct {
	s    *Store
	id   int64
	sha  string
	size int64

	mu    sync.Mutex
	chunk int64 // index of buf, -1 for none
	buf   []byte
}

func (b *dbBlob) Size() int64  { return b.size }
func (b *dbBlob) Close() error { return nil }

// ReadAt implements io.ReaderAt; it is safe for concurrent use.
func (b *dbBlob) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blob %s: negative offset", b.sha)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= b.size {
			return n, io.EOF
		}
		c := pos / blobChunk
		data, err := b.load(c)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[pos-c*blobChunk:])
	}
	return n, nil
}

func (b *dbBlob) load(c int64) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.chunk == c {
		return b.buf, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	var data []byte
	// substring counts from 1.
	err := b.s.pool.QueryRow(ctx, `SELECT substring(data FROM $2 FOR $3) FROM blobs WHERE id = $1`,
		b.id, c*blobChunk+1, blobChunk).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read blob %s: %w", b.sha, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", b.sha, err)
	}
	if want := min(blobChunk, b.size-c*blobChunk); int64(len(data)) != want {
		return nil, fmt.Errorf("read blob %s: chunk %d has %d bytes, want %d", b.sha, c, len(data), want)
	}
	b.chunk, b.buf = c, data
	return data, nil
}

// CollectGarbage implements store.Store. A blob's count only reaches zero
// when its last reference goes; a delivery adding one concurrently
// raises the count under the row's lock, and DELETE re-checks the
// condition on the row it waited for, so a body being delivered again is
// never taken. Spool files of this Store older than minAge (spooled for a
// delivery that never came) go too.
func (s *Store) CollectGarbage(ctx context.Context, minAge time.Duration) (int, error) {
	var removed int
	err := s.write(ctx, func(w *wtx) error {
		// Locked in hash order, the package's lock order for blobs, so a
		// batch of deliveries adding to several of them cannot deadlock
		// with this.
		tag, err := w.exec(`DELETE FROM blobs WHERE id IN (
			SELECT id FROM blobs WHERE refcount <= 0 ORDER BY sha FOR UPDATE) AND refcount <= 0`)
		removed = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("collect garbage: %w", err)
	}
	cutoff := s.now().Add(-minAge)
	files, _ := filepath.Glob(filepath.Join(s.spoolDir, "spool-*"))
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		if err := os.Remove(p); err == nil {
			removed++
		}
	}
	return removed, nil
}
