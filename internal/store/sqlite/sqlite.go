// Package sqlite is Tern's embedded store: one SQLite database (dir/tern.db)
// plus a folder of large message bodies (dir/blobs).
//
// All writes go through one writer goroutine that owns the only writing
// connection. It takes every write request waiting at that moment, runs
// each inside its own SAVEPOINT of one transaction and commits once, so N
// concurrent deliveries cost one fsync instead of N (group commit), while
// one failing request (quota, missing mailbox) rolls back alone. Reads use
// a separate pool of read-only connections and never wait for the writer
// (WAL).
package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/feed"
)

var _ store.Store = (*Store)(nil)

// inlineMax is the largest body kept inside the database; larger ones get
// a file of their own. The file path pays create+fsync+rename+fsync-dir
// per message and does not batch; the inline path writes each body twice
// (WAL, then checkpoint) but shares one commit among concurrent
// deliveries. Measured (BenchmarkDeliverSize, msgs/s with 1 and 64
// writers, inline vs file): 100 KiB 957/1574 vs 602/1130; 128 KiB
// 815/1135 vs 575/899; 192 KiB 603/805 vs 468/790; 256 KiB 516/631 vs
// 525/962. Inline wins up to about 192 KiB. A body in flight is held in
// memory up to this size.
const inlineMax = 192 << 10

// maxBatch bounds one group commit so a burst of writers cannot make one
// transaction (and the WAL) grow without limit.
const maxBatch = 256

// busyTimeout covers another process (the admin CLI) holding the write
// lock while "tern serve" runs, and checkpoints.
const busyTimeout = 10 * time.Second

// Store is the SQLite implementation of store.Store. Use Open.
type Store struct {
	dir      string
	blobDir  string
	log      *slog.Logger
	wdb      *sql.DB              // one connection, used only by the writer goroutine
	rdb      *sql.DB              // read-only pool
	ckdb     *sql.DB              // one connection, used only by the checkpointer
	hot      map[string]*sql.Stmt // prepared on wdb; read-only after Open
	now      func() time.Time
	inlineAt int64 // bodies up to this size are kept in the database

	reqs      chan *writeReq
	quit      chan struct{}
	writerEnd chan struct{}
	ckptEnd   chan struct{}
	closeOnce sync.Once

	feed feed.Hub // Subscribe

	lockMu sync.Mutex
	locks  map[string]struct{}

	// Counters for group-commit tuning and metrics.
	commits atomic.Int64 // transactions committed by the writer
	writes  atomic.Int64 // requests they carried
}

// sqliteMagic starts every SQLite database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// Open opens (creating if needed) the store in dir and brings its schema
// up to date.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The database is opened by URI ("file:...?_pragma=..."), where these
	// would end the path.
	if strings.ContainsAny(dir, "?#") {
		return nil, fmt.Errorf("open store: data directory %q: '?' and '#' are not supported in its path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: create data directory: %w", err)
	}
	blobDir := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(filepath.Join(blobDir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("open store: create blob directory: %w", err)
	}
	// Fail early and clearly on an unwritable directory, rather than with
	// SQLite's "unable to open database file" later.
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("open store: data directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())

	path := filepath.Join(dir, "tern.db")
	if err := checkDatabaseFile(path); err != nil {
		return nil, err
	}

	s := &Store{
		dir:       dir,
		blobDir:   blobDir,
		log:       log,
		now:       time.Now,
		inlineAt:  inlineMax,
		reqs:      make(chan *writeReq),
		quit:      make(chan struct{}),
		writerEnd: make(chan struct{}),
		ckptEnd:   make(chan struct{}),
		locks:     make(map[string]struct{}),
	}
	if err := createDatabase(path, pageSize); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if s.wdb, err = sql.Open("sqlite", dsn(path, false)); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	ctx := context.Background()
	if err := migrate(ctx, s.wdb); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := s.prepareHot(); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if s.rdb, err = sql.Open("sqlite", dsn(path, true)); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.rdb.SetMaxOpenConns(8)
	s.rdb.SetMaxIdleConns(8)
	if s.ckdb, err = sql.Open("sqlite", dsn(path, false)); err != nil {
		s.rdb.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.ckdb.SetMaxOpenConns(1)
	go s.writer()
	go s.checkpointer()
	return s, nil
}

// pageSize is half SQLite's default 4096. A delivery touches a few pages
// at random places (the blob hash index) and every touched page goes
// whole into the WAL; when the disk is shared its write bandwidth, not
// fsync latency, bounds group commit. Measured (BenchmarkDeliver,
// written-B/msg, 4 KB messages): 4096 → 40.6 KB unbatched, 13.1 KB
// batched; 2048 → 25.7 KB, 11.6 KB; 1024 → 17.7 KB, 9.2 KB. Smaller pages
// cost reads: a 10,000-message ListMessages took 6.0 ms CPU at 4096 and
// 2048, 7.5 ms at 1024. 2048 takes most of the write saving at no read
// cost.
const pageSize = 2048

// createDatabase sets the page size of a database that does not exist
// yet; it can only be chosen before the first write, and the DSN's
// _pragma list is applied in an order that switches to WAL first.
func createDatabase(path string, pageSize int) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return nil
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(fmt.Sprintf("PRAGMA page_size = %d", pageSize)); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	if _, err := db.Exec("PRAGMA journal_mode = WAL"); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

// checkDatabaseFile refuses a file that exists but is not an SQLite
// database, before SQLite gets a chance to touch it.
func checkDatabaseFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer f.Close()
	head := make([]byte, len(sqliteMagic))
	n, err := io.ReadFull(f, head)
	if n == 0 && (err == io.EOF) {
		return nil // empty file: SQLite treats it as a new database
	}
	if err != nil || !bytes.Equal(head, sqliteMagic) {
		return fmt.Errorf("open store: %s is not an SQLite database (refusing to touch it)", path)
	}
	return nil
}

// dsn builds the connection string. PRAGMAs must be in the DSN: an Exec
// of a PRAGMA reaches only one pooled connection. The writer uses
// immediate transactions so it takes the write lock at BEGIN, where
// busy_timeout applies, instead of failing on a read-to-write upgrade.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+fmt.Sprint(busyTimeout.Milliseconds())+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
		// Checkpoints run on their own connection (checkpointer), not
		// inside a delivery batch's commit.
		q.Add("_pragma", "wal_autocheckpoint(0)")
		// A burst can grow the WAL; once checkpointed, cut it back.
		q.Add("_pragma", "journal_size_limit(67108864)")
	}
	return "file:" + path + "?" + q.Encode()
}

// Close stops the writer after its current batch and closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.writerEnd
		<-s.ckptEnd
		// Fold the WAL into the database so the data directory is one
		// self-contained file at rest (handy for backups).
		if _, cerr := s.wdb.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); cerr != nil {
			s.log.Warn("final checkpoint", "err", cerr)
		}
		err = errors.Join(s.rdb.Close(), s.ckdb.Close(), s.wdb.Close())
	})
	return err
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(accountID int64) (<-chan struct{}, func()) {
	return s.feed.Subscribe(accountID)
}

// Lock implements store.Store. The lock lives in this process only: a
// crashed holder's locks vanish with it.
func (s *Store) Lock(ctx context.Context, name string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if _, held := s.locks[name]; held {
		return nil, fmt.Errorf("lock %q: %w", name, store.ErrInUse)
	}
	s.locks[name] = struct{}{}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.lockMu.Lock()
			delete(s.locks, name)
			s.lockMu.Unlock()
		})
	}, nil
}
