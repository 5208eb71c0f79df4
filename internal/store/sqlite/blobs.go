package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/spool"
)

// Spool implements store.Store. Bodies up to inlineAt bytes stay in memory
// and are written inside the delivery's transaction; larger ones are made
// durable in blobs/ab/<sha256> before Spool returns. maxSize <= 0 means no
// limit.
func (s *Store) Spool(ctx context.Context, r io.Reader, maxSize int64) (*store.Blob, error) {
	b, err := spool.Read(ctx, r, maxSize, spool.Options{Inline: s.inlineAt, Dir: filepath.Join(s.blobDir, "tmp"), Sync: true})
	if err != nil || b.Path == "" {
		return b, classify(err)
	}
	b, err = s.placeFile(b)
	return b, classify(err)
}

// placeFile renames a spooled file to its content address, with the
// fsyncs that make its name durable.
func (s *Store) placeFile(b *store.Blob) (*store.Blob, error) {
	final := s.blobPath(b.ID)
	if err := mkdirDurable(filepath.Dir(final)); err != nil {
		os.Remove(b.Path)
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(b.Path, final); err != nil {
		os.Remove(b.Path)
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	b.Path = final
	return b, nil
}

// mkdirDurable creates dir (one level) if missing and fsyncs its parent
// so the new directory entry survives a crash.
func mkdirDurable(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// blobPath is where a file blob lives: a two-hex-digit fan-out keeps
// directories small. id must be validated (spool.ValidID) by the caller.
func (s *Store) blobPath(id string) string {
	return filepath.Join(s.blobDir, id[:2], id)
}

const sqlAddBlobRef = `INSERT INTO blobs (sha, size, refcount, in_file, data, info) VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (sha) DO UPDATE SET refcount = refcount + excluded.refcount, info = coalesce(info, excluded.info)
	RETURNING id`

// addBlobRefs records n more references to b, inserting its row (and, for
// an inline body, its data) on first use, and returns the row's id.
func (w *wtx) addBlobRefs(b *store.Blob, info *msginfo.Info, n int) (int64, error) {
	if b == nil || !spool.ValidID(b.ID) {
		return 0, fmt.Errorf("%w: bad blob", store.ErrInvalid)
	}
	sha, _ := hex.DecodeString(b.ID)
	var infoJSON any
	if info != nil {
		j, err := json.Marshal(info)
		if err != nil {
			return 0, fmt.Errorf("encode message info: %w", err)
		}
		infoJSON = string(j)
	}
	inFile := 0
	var data any = b.Data
	if b.Path != "" {
		// The file was made durable by Spool; GC may have removed it if
		// the same body's last reference went away since, so look.
		if _, err := os.Stat(w.s.blobPath(b.ID)); err != nil {
			return 0, fmt.Errorf("blob %s: %w", b.ID, err)
		}
		inFile, data = 1, nil
	} else if int64(len(b.Data)) != b.Size {
		return 0, fmt.Errorf("%w: blob data length %d, size %d", store.ErrInvalid, len(b.Data), b.Size)
	} else if b.Data == nil {
		data = []byte{}
	}
	var id int64
	err := w.queryRow(sqlAddBlobRef, sha, b.Size, n, inFile, data, infoJSON).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add blob reference: %w", err)
	}
	return id, nil
}

// releaseMessages drops the blob references and account usage of the
// messages selected by where (a condition on messages m), before the
// caller deletes them.
func (w *wtx) releaseMessages(where string, args ...any) error {
	_, err := w.exec(`UPDATE blobs SET refcount = refcount - r.n
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

// OpenBlob implements store.Store.
func (s *Store) OpenBlob(ctx context.Context, id string) (store.BlobReader, error) {
	if !spool.ValidID(id) {
		return nil, fmt.Errorf("open blob: %w", store.ErrNotFound)
	}
	var (
		size   int64
		inFile bool
		data   []byte
	)
	sha, _ := hex.DecodeString(id)
	err := s.rdb.QueryRowContext(ctx, `SELECT size, in_file, data FROM blobs WHERE sha = ?`, sha).Scan(&size, &inFile, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("open blob %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", id, err)
	}
	if !inFile {
		return &memBlob{bytes.NewReader(data)}, nil
	}
	f, err := os.Open(s.blobPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: file missing: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return &fileBlob{f, size}, nil
}

type memBlob struct{ *bytes.Reader }

func (m *memBlob) Close() error { return nil }

type fileBlob struct {
	*os.File
	size int64
}

func (f *fileBlob) Size() int64 { return f.size }

// CollectGarbage implements store.Store. It runs on the writer goroutine,
// so no delivery can add a reference to a blob between finding it
// unreferenced and removing it. A file whose row goes but which is younger
// than minAge is left in place: Spool may have just (re)written it for a
// delivery to come; it is removed as an orphan on a later run.
func (s *Store) CollectGarbage(ctx context.Context, minAge time.Duration) (int, error) {
	removed := 0
	err := s.write(ctx, func(w *wtx) error {
		// Orphans: files with no row, e.g. spooled for a delivery that
		// failed or never came. Scanned inside the writer so a row a
		// delivery inserted is seen, and before the DELETE below so the
		// files of the rows it removes are not counted twice.
		orphans, err := s.orphanFiles(w, minAge)
		if err != nil {
			return err
		}
		removed = len(orphans)
		w.afterCommit(func() {
			for _, p := range orphans {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					s.log.Warn("remove orphan blob file", "path", p, "err", err)
				}
			}
		})
		rows, err := w.query(`DELETE FROM blobs WHERE refcount <= 0 RETURNING sha, in_file`)
		if err != nil {
			return fmt.Errorf("collect blobs: %w", err)
		}
		var files []string
		n := 0
		for rows.Next() {
			var sha []byte
			var inFile bool
			if err := rows.Scan(&sha, &inFile); err != nil {
				rows.Close()
				return err
			}
			n++
			if inFile {
				files = append(files, hex.EncodeToString(sha))
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		removed += n
		w.afterCommit(func() { s.removeBlobFiles(files, minAge) })
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("collect garbage: %w", err)
	}
	return removed, nil
}

func (s *Store) removeBlobFiles(ids []string, minAge time.Duration) {
	cutoff := s.now().Add(-minAge)
	for _, id := range ids {
		p := s.blobPath(id)
		fi, err := os.Stat(p)
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		if err := os.Remove(p); err != nil {
			s.log.Warn("remove blob file", "path", p, "err", err)
		}
	}
}

// orphanFiles lists spool leftovers and blob files without a row, older
// than minAge.
func (s *Store) orphanFiles(w *wtx, minAge time.Duration) ([]string, error) {
	cutoff := s.now().Add(-minAge)
	var out []string
	old := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && !fi.ModTime().After(cutoff)
	}
	tmps, _ := filepath.Glob(filepath.Join(s.blobDir, "tmp", "spool-*"))
	for _, p := range tmps {
		if old(p) {
			out = append(out, p)
		}
	}
	dirs, err := os.ReadDir(s.blobDir)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if !d.IsDir() || len(d.Name()) != 2 {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(s.blobDir, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			id := e.Name()
			p := filepath.Join(s.blobDir, d.Name(), id)
			if !spool.ValidID(id) || !strings.HasPrefix(id, d.Name()) || !old(p) {
				continue
			}
			var one int
			sha, _ := hex.DecodeString(id)
			err := w.queryRow(`SELECT 1 FROM blobs WHERE sha = ? AND in_file = 1`, sha).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				out = append(out, p)
			} else if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
