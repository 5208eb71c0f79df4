package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ternmail/tern/internal/store"
)

// migrations are applied in order; migration i brings the database to
// user_version i+1. Never edit a released migration: append a new one.
//
// Times are Unix nanoseconds (INTEGER) so they sort and compare in SQL and
// round-trip exactly.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) STRICT;

CREATE TABLE domains (
	name      TEXT PRIMARY KEY,
	catch_all TEXT NOT NULL DEFAULT '',
	created   INTEGER NOT NULL
) STRICT;

-- Accounts, mailboxes and queue entries are AUTOINCREMENT: an ID is never
-- given again after a removal, so a session or an event log still holding
-- an old ID can never reach someone else's data.
CREATE TABLE accounts (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	address       TEXT NOT NULL UNIQUE,
	domain        TEXT NOT NULL REFERENCES domains(name),
	password_hash TEXT NOT NULL,
	quota_bytes   INTEGER NOT NULL DEFAULT 0,
	used_bytes    INTEGER NOT NULL DEFAULT 0,
	admin         INTEGER NOT NULL DEFAULT 0,
	created       INTEGER NOT NULL
) STRICT;
CREATE INDEX accounts_domain ON accounts(domain);

CREATE TABLE aliases (
	address TEXT PRIMARY KEY,
	domain  TEXT NOT NULL REFERENCES domains(name),
	targets TEXT NOT NULL, -- JSON array of addresses
	send_as INTEGER NOT NULL DEFAULT 0,
	created INTEGER NOT NULL
) STRICT;
CREATE INDEX aliases_domain ON aliases(domain);

-- Rows are keyed by a sequential integer so a delivery appends its body
-- instead of inserting it at a random place; only the small sha index is
-- touched at random. Messages and queue entries refer to the integer.
CREATE TABLE blobs (
	id       INTEGER PRIMARY KEY,
	sha      BLOB NOT NULL UNIQUE, -- SHA-256 of the body (32 bytes)
	size     INTEGER NOT NULL,
	refcount INTEGER NOT NULL,
	in_file  INTEGER NOT NULL, -- 1: body in blobs/ab/<hex sha>, data is NULL
	data     BLOB,
	info     TEXT -- msginfo.Info as JSON, NULL when unknown
) STRICT;
CREATE INDEX blobs_unreferenced ON blobs(refcount) WHERE refcount <= 0;

CREATE TABLE mailboxes (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name           TEXT NOT NULL,
	uidvalidity    INTEGER NOT NULL,
	uidnext        INTEGER NOT NULL DEFAULT 1,
	highestmodseq  INTEGER NOT NULL DEFAULT 1,
	special_use    TEXT NOT NULL DEFAULT '',
	subscribed     INTEGER NOT NULL DEFAULT 0,
	created        INTEGER NOT NULL,
	UNIQUE (account_id, name)
) STRICT;

-- Clustered on (mailbox_id, uid): listing a mailbox is one range scan.
CREATE TABLE messages (
	mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid           INTEGER NOT NULL,
	modseq        INTEGER NOT NULL,
	flags         INTEGER NOT NULL DEFAULT 0, -- system flags bitmask
	keywords      TEXT NOT NULL DEFAULT '',   -- space-separated
	internal_date INTEGER NOT NULL,
	size          INTEGER NOT NULL,
	blob_id       INTEGER NOT NULL REFERENCES blobs(id),
	PRIMARY KEY (mailbox_id, uid)
) STRICT, WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

CREATE TABLE tombstones (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid        INTEGER NOT NULL,
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) STRICT, WITHOUT ROWID;
CREATE INDEX tombstones_modseq ON tombstones(mailbox_id, modseq);

CREATE TABLE queue (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	blob_id      INTEGER NOT NULL REFERENCES blobs(id),
	mail_from    TEXT NOT NULL,
	domain       TEXT NOT NULL,
	recipients   TEXT NOT NULL, -- JSON array of store.QueueRecipient
	dsn_ret      TEXT NOT NULL DEFAULT '',
	dsn_envid    TEXT NOT NULL DEFAULT '',
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	last_error   TEXT NOT NULL DEFAULT '',
	created      INTEGER NOT NULL,
	lease_owner  TEXT NOT NULL DEFAULT '',
	lease_until  INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX queue_next ON queue(next_attempt);

CREATE TABLE events (
	id       INTEGER PRIMARY KEY,
	queue_id INTEGER NOT NULL,
	time     INTEGER NOT NULL,
	kind     TEXT NOT NULL,
	detail   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX events_queue ON events(queue_id);
`,
	// 2: SCRAM-SHA-256 keys (store.Account.SCRAM). Existing accounts get
	// theirs at their next password login.
	`
ALTER TABLE accounts ADD COLUMN scram TEXT NOT NULL DEFAULT '';
`,
}

// schemaVersion is the version this code writes.
var schemaVersion = len(migrations)

// migrate brings the database up to schemaVersion. Each step runs in its
// own immediate transaction, re-reading user_version inside it, so two
// processes opening the same new data directory do not both apply it.
func migrate(ctx context.Context, db *sql.DB) error {
	for {
		done, err := migrateStep(ctx, db)
		if err != nil || done {
			return err
		}
	}
}

func migrateStep(ctx context.Context, db *sql.DB) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return false, fmt.Errorf("migrate: read schema version: %w", err)
	}
	if v > schemaVersion {
		return false, fmt.Errorf("%w: database has schema version %d, this program knows up to %d",
			store.ErrNewerSchema, v, schemaVersion)
	}
	if v == schemaVersion {
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate to schema version %d: %w", v+1, err)
	}
	// PRAGMA takes no bound parameters; v+1 is an int we computed.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return false, fmt.Errorf("migrate: set schema version %d: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate to schema version %d: commit: %w", v+1, err)
	}
	return false, nil
}
