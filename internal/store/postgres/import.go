package postgres

// Copying a store/sqlite data directory into an empty PostgreSQL store
// ("tern migrate --to postgres"). Rows are copied as they are: ids, UIDs,
// UIDVALIDITYs, MODSEQs, flags and tombstones stay the same, so IMAP
// clients resynchronise without downloading anything again. The two
// schemas were made alike for this; the copy reads SQLite's tables by
// column name and refuses a table with a column it does not know, rather
// than drop data a newer schema added.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/spool"
)

// ImportProgress reports how far an import is: Done out of Total work
// units, where a body's byte and a row of any table count for one and
// rowWeight units.
type ImportProgress struct {
	Table       string
	Done, Total int64
}

// rowWeight is the work of copying one row, in bytes of body: what makes
// a progress bar move evenly over small rows and large bodies.
const rowWeight = 200

// ImportCounts is how many rows of each table an import copied.
type ImportCounts map[string]int64

// importTable is one SQLite table and how its columns convert.
type importTable struct {
	name  string
	cols  []string
	kinds string // per column: i int64, s string, n nullable string, b bool, y bytes
	where string // rows to copy
}

// importTables are in foreign-key order. blobs is special: its data
// column comes from the file when in_file is set.
var importTables = []importTable{
	{"domains", []string{"name", "catch_all", "created"}, "ssi", ""},
	{"accounts", []string{"id", "address", "domain", "password_hash", "scram", "quota_bytes", "used_bytes", "admin", "created"}, "issssiibi", ""},
	{"aliases", []string{"address", "domain", "targets", "send_as", "created"}, "sssbi", ""},
	{"blobs", []string{"id", "sha", "size", "refcount", "data", "info"}, "iyiiyn", "refcount > 0"},
	{"mailboxes", []string{"id", "account_id", "name", "uidvalidity", "uidnext", "highestmodseq", "special_use", "subscribed", "created"}, "iisiiisbi", ""},
	{"messages", []string{"mailbox_id", "uid", "modseq", "flags", "keywords", "internal_date", "size", "blob_id"}, "iiiisiii", ""},
	{"tombstones", []string{"mailbox_id", "uid", "modseq"}, "iii", ""},
	{"queue", []string{"id", "blob_id", "mail_from", "domain", "recipients", "dsn_ret", "dsn_envid", "attempts", "next_attempt", "last_error", "created", "lease_owner", "lease_until"}, "iisssssiisisi", ""},
	{"events", []string{"id", "queue_id", "time", "kind", "detail"}, "iiiss", ""},
}

// sqliteOnly are SQLite columns that have no column of their own here.
var sqliteOnly = map[string][]string{"blobs": {"in_file"}}

// sqliteAdded are columns that later SQLite migrations added, with the SQL
// value a source from before them is copied with: the copy reads the
// source as it is, without migrating it first.
var sqliteAdded = map[string]map[string]string{
	"accounts": {"scram": "''"}, // schema 2: keys made at the next login
}

// ImportSQLite copies the SQLite store in dataDir into s, which must be
// empty, in one transaction that commits only if the copy passes Check's
// invariants. Nothing may write to
// dataDir meanwhile: stop tern serve first. progress, if not nil, is
// called as the copy advances.
func (s *Store) ImportSQLite(ctx context.Context, dataDir string, progress func(ImportProgress)) (ImportCounts, error) {
	if progress == nil {
		progress = func(ImportProgress) {}
	}
	src, err := openSQLite(dataDir)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// One read transaction: one snapshot of the whole source.
	stx, err := src.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer stx.Rollback()
	total, err := importWork(ctx, stx)
	if err != nil {
		return nil, err
	}
	counts := ImportCounts{}
	err = s.write(ctx, func(w *wtx) error {
		clear(counts)
		if err := w.checkEmpty(); err != nil {
			return err
		}
		var done int64
		for _, t := range importTables {
			n, err := w.copyTable(stx, t, dataDir, func(work int64) {
				done += work
				progress(ImportProgress{Table: t.name, Done: done, Total: total})
			})
			if err != nil {
				return fmt.Errorf("import %s: %w", t.name, err)
			}
			counts[t.name] = n
		}
		if err := w.importCounters(stx); err != nil {
			return err
		}
		// Checked before the commit: a copy with problems is not kept.
		problems, err := checkIn(w.ctx, w.tx)
		if err != nil {
			return fmt.Errorf("import: check: %w", err)
		}
		if len(problems) > 0 {
			return fmt.Errorf("import: the copy would have %d problems (run tern check on the source), the first: %s",
				len(problems), problems[0])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

func openSQLite(dataDir string) (*sql.DB, error) {
	path := filepath.Join(dataDir, "tern.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// importWork sums the work to do, and checks that every table has the
// columns this copy knows and no others.
func importWork(ctx context.Context, stx *sql.Tx) (int64, error) {
	var total int64
	for _, t := range importTables {
		have, err := sqliteColumns(ctx, stx, t.name)
		if err != nil {
			return 0, err
		}
		want := append(slices.Clone(t.cols), sqliteOnly[t.name]...)
		for _, c := range have {
			if !slices.Contains(want, c) {
				return 0, fmt.Errorf("import: SQLite table %s has column %s, unknown to this version of tern migrate", t.name, c)
			}
		}
		for _, c := range want {
			if _, ok := sqliteAdded[t.name][c]; !ok && !slices.Contains(have, c) {
				return 0, fmt.Errorf("import: SQLite table %s lacks column %s", t.name, c)
			}
		}
		var n, bytes int64
		q := `SELECT count(*), 0 FROM ` + t.name
		if t.name == "blobs" {
			q = `SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE refcount > 0`
		}
		if err := stx.QueryRowContext(ctx, q).Scan(&n, &bytes); err != nil {
			return 0, fmt.Errorf("import: count %s: %w", t.name, err)
		}
		total += n*rowWeight + bytes
	}
	return total, nil
}

func sqliteColumns(ctx context.Context, stx *sql.Tx, table string) ([]string, error) {
	rows, err := stx.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, fmt.Errorf("import: columns of %s: %w", table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	if len(cols) == 0 && rows.Err() == nil {
		return nil, fmt.Errorf("import: no table %s: is this a Tern data directory?", table)
	}
	return cols, rows.Err()
}

// checkEmpty refuses to import over data.
func (w *wtx) checkEmpty() error {
	for _, t := range importTables {
		ok, err := w.exists(`SELECT 1 FROM ` + t.name + ` LIMIT 1`)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("import: %w: the PostgreSQL store is not empty (table %s has rows)", store.ErrExists, t.name)
		}
	}
	return nil
}

// copyTable streams one table with COPY.
func (w *wtx) copyTable(stx *sql.Tx, t importTable, dataDir string, advance func(int64)) (int64, error) {
	have, err := sqliteColumns(w.ctx, stx, t.name)
	if err != nil {
		return 0, err
	}
	cols := slices.Clone(t.cols)
	if t.name == "blobs" {
		cols = append(cols, "in_file")
	}
	for i, c := range cols {
		if def, ok := sqliteAdded[t.name][c]; ok && !slices.Contains(have, c) {
			cols[i] = def + ` AS ` + c
		}
	}
	q := `SELECT ` + strings.Join(cols, ", ") + ` FROM ` + t.name
	if t.where != "" {
		q += ` WHERE ` + t.where
	}
	rows, err := stx.QueryContext(w.ctx, q)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int64
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		vals, work, err := scanImportRow(rows, t, dataDir)
		if err != nil {
			return nil, err
		}
		n++
		advance(rowWeight + work)
		return vals, nil
	})
	if _, err := w.tx.CopyFrom(w.ctx, pgx.Identifier{t.name}, t.cols, src); err != nil {
		return n, err
	}
	return n, nil
}

// scanImportRow reads one row in t's column kinds; for blobs it loads a
// body kept in a file, checking it against its hash. work is the body
// bytes copied.
func scanImportRow(rows *sql.Rows, t importTable, dataDir string) (vals []any, work int64, err error) {
	dest := make([]any, len(t.kinds))
	for i, k := range t.kinds {
		switch k {
		case 'i', 'b':
			dest[i] = new(int64)
		case 's':
			dest[i] = new(string)
		case 'n':
			dest[i] = new(sql.NullString)
		case 'y':
			dest[i] = new([]byte)
		}
	}
	var inFile int64
	if t.name == "blobs" {
		dest = append(dest, &inFile)
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, 0, err
	}
	vals = make([]any, len(t.kinds))
	for i, k := range t.kinds {
		switch k {
		case 'i':
			vals[i] = *dest[i].(*int64)
		case 'b':
			vals[i] = *dest[i].(*int64) != 0
		case 's':
			vals[i] = *dest[i].(*string)
		case 'n':
			if ns := *dest[i].(*sql.NullString); ns.Valid {
				vals[i] = ns.String
			}
		case 'y':
			b := *dest[i].(*[]byte)
			if b == nil {
				b = []byte{}
			}
			vals[i] = b
		}
	}
	if t.name != "blobs" {
		return vals, 0, nil
	}
	sha, size := vals[1].([]byte), vals[2].(int64)
	id := hex.EncodeToString(sha)
	if inFile != 0 {
		if !spool.ValidID(id) {
			return nil, 0, fmt.Errorf("blob with a bad hash %q", id)
		}
		data, err := os.ReadFile(filepath.Join(dataDir, "blobs", id[:2], id))
		if err != nil {
			return nil, 0, fmt.Errorf("blob %s: %w", id, err)
		}
		if h := sha256.Sum256(data); !slices.Equal(h[:], sha) {
			return nil, 0, fmt.Errorf("blob %s: file content does not match its hash", id)
		}
		vals[4] = data
	}
	if int64(len(vals[4].([]byte))) != size {
		return nil, 0, fmt.Errorf("blob %s: %d bytes, size %d", id, len(vals[4].([]byte)), size)
	}
	return vals, size, nil
}

// importCounters carries over what the rows alone do not say: the last
// UIDVALIDITY given, and the ids given so far (SQLite's AUTOINCREMENT
// never gives one again, even after its row is deleted; the identity
// sequences here must not either).
func (w *wtx) importCounters(stx *sql.Tx) error {
	var uv int64
	err := stx.QueryRowContext(w.ctx, `SELECT value FROM meta WHERE key = 'uidvalidity'`).Scan(&uv)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("import: meta: %w", err)
	}
	if _, err := w.exec(`UPDATE meta SET value = greatest(value, $1) WHERE key = 'uidvalidity'`, uv); err != nil {
		return fmt.Errorf("import: meta: %w", err)
	}
	seqs := map[string]int64{}
	rows, err := stx.QueryContext(w.ctx, `SELECT name, seq FROM sqlite_sequence`)
	if err == nil {
		for rows.Next() {
			var name string
			var seq int64
			if err := rows.Scan(&name, &seq); err != nil {
				rows.Close()
				return err
			}
			seqs[name] = seq
		}
		rows.Close()
	} // no sqlite_sequence: no AUTOINCREMENT table was ever written
	for _, table := range []string{"accounts", "blobs", "mailboxes", "queue", "events"} {
		_, err := w.exec(`SELECT setval(pg_get_serial_sequence($1, 'id'),
			greatest(coalesce((SELECT max(id) FROM `+table+`), 0), $2) + 1, false)`, table, seqs[table])
		if err != nil {
			return fmt.Errorf("import: id sequence of %s: %w", table, err)
		}
	}
	return nil
}
