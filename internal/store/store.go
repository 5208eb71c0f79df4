// Package store is Tern's data model: domains, accounts, aliases, mailboxes,
// messages with their flags and MODSEQs, expunge tombstones, message bodies
// (blobs), the outbound queue and its delivery events.
//
// Store is implemented by store/sqlite (the embedded default) and
// store/postgres (several nodes on one database); store/storetest is the
// conformance suite both must pass.
//
// Rules every implementation keeps:
//   - A method that changes state returns only after the change is committed
//     and durable (fsync'ed). A crash at any instant leaves either the whole
//     change or none of it.
//   - Every change to a mailbox (new message, flag change, expunge) takes a
//     new MODSEQ from that mailbox's HIGHESTMODSEQ; UIDs are never reused
//     within a UIDVALIDITY.
//   - After a change commits, subscribers of the account (Subscribe) are
//     signalled.
//   - Message bodies are content-addressed blobs stored once and counted by
//     reference; a blob is durable before the transaction that references
//     it commits and is collected once nothing references it.
package store

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/ternmail/tern/internal/msginfo"
)

// Sentinel errors. Doors map them to protocol replies.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrQuota         = errors.New("quota exceeded")
	ErrInUse         = errors.New("in use")           // e.g. domain with accounts, locked maildrop
	ErrInvalid       = errors.New("invalid argument") // wrapped with the reason
	ErrTooBig        = errors.New("message too big")
	ErrFull          = errors.New("storage full")   // disk or database full: temporary for clients
	ErrModified      = errors.New("modified since") // CONDSTORE UNCHANGEDSINCE failed
	ErrNewerSchema   = errors.New("database schema is newer than this program")
	ErrLocked        = errors.New("data directory is in use by another process")
	ErrNoSuchMailbox = errors.New("no such mailbox")
)

// System flags, stored in canonical form. Keywords are any other atom and
// compare case-insensitively; the store keeps the first spelling seen.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Special-use attributes (RFC 6154) given to the mailboxes every account
// gets at creation.
const (
	SpecialSent    = `\Sent`
	SpecialDrafts  = `\Drafts`
	SpecialTrash   = `\Trash`
	SpecialJunk    = `\Junk`
	SpecialArchive = `\Archive`
)

// DefaultMailboxes are created with every account, in this order.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""},
	{"Sent", SpecialSent},
	{"Drafts", SpecialDrafts},
	{"Trash", SpecialTrash},
	{"Junk", SpecialJunk},
	{"Archive", SpecialArchive},
}

// Domain is a mail domain served locally. Name is lower-case A-label (IDN
// domains are stored in their ASCII form).
type Domain struct {
	Name     string
	CatchAll string // address that receives mail for unknown local parts, or ""
	Created  time.Time
}

// Account is a user who logs in and owns mailboxes. Address is the
// canonical lower-case local@domain.
type Account struct {
	ID           int64
	Address      string
	PasswordHash string // argon2id PHC string; never the password
	// SCRAM holds the SCRAM-SHA-256 keys (RFC 5802, RFC 7677) derived
	// from the same password, in RFC 5803's form
	// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64):
	// never the password or the SaltedPassword. It is "" for an account
	// whose password was set before Tern knew SCRAM, until its next
	// password login fills it in (SetSCRAM).
	SCRAM      string
	QuotaBytes int64 // 0 means no limit
	UsedBytes  int64 // sum of the sizes of all its messages
	Admin      bool
	Created    time.Time
}

// Alias maps an address to one or more targets: local addresses (accounts
// or other aliases) or remote addresses.
type Alias struct {
	Address string
	Targets []string
	// SendAs lets every local account among the targets send with Address
	// as sender.
	SendAs  bool
	Created time.Time
}

// Mailbox is one folder of an account. Name uses "/" as hierarchy separator
// and is UTF-8; "INBOX" is always spelled so.
type Mailbox struct {
	ID            int64
	AccountID     int64
	Name          string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	SpecialUse    string
	Subscribed    bool
	Created       time.Time
}

// MailboxStatus is a mailbox with its counts, as STATUS and LIST-STATUS
// report them.
type MailboxStatus struct {
	Mailbox
	Messages int
	Unseen   int
	Deleted  int
	Size     int64 // sum of message sizes, STATUS=SIZE
}

// MessageMeta is the small per-message state a session keeps to map
// sequence numbers and report flag changes.
type MessageMeta struct {
	UID    uint32
	ModSeq uint64
	Flags  []string // system flags first, then keywords, sorted
	// Size in octets; set by ListMessages and ChangesSince (POP3 lists
	// sizes without loading each message).
	Size int64
}

// Message is a message in a mailbox with what was parsed of it at delivery.
type Message struct {
	MessageMeta
	MailboxID    int64
	InternalDate time.Time
	Size         int64
	BlobID       string // lower-case hex SHA-256 of the body
	Info         *msginfo.Info
}

// Blob is a message body spooled into the store by Spool, ready to be
// referenced by Deliver. Small bodies are held in memory and written inside
// the delivery transaction; large ones are already durable in a file.
type Blob struct {
	ID   string // lower-case hex SHA-256
	Size int64
	// Implementation-private state (inline data, file path).
	Data []byte
	Path string
}

// BlobReader reads a stored body. It is safe for concurrent ReadAt calls.
type BlobReader interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Target is one mailbox a delivery files the message into.
type Target struct {
	AccountID    int64
	Mailbox      string // name; "INBOX" for ordinary delivery
	Flags        []string
	InternalDate time.Time // zero means now
}

// Delivered reports where a message was filed.
type Delivered struct {
	AccountID   int64
	MailboxID   int64
	UIDValidity uint32
	UID         uint32
}

// DSN options of one message (RFC 3461), kept for bounces.
type DSN struct {
	Ret   string // "FULL" or "HDRS" or ""
	EnvID string
}

// QueueRecipient is one remote recipient queued for relay.
type QueueRecipient struct {
	Address  string
	Notify   string // RFC 3461 NOTIFY, e.g. "FAILURE,DELAY" or ""
	ORcpt    string
	Original string // the address the sender wrote, before alias expansion
}

// Delivery is everything one message does in one transaction: filed into
// every local target and queued for every remote recipient.
type Delivery struct {
	Blob   *Blob
	Info   *msginfo.Info
	From   string // envelope sender (reverse-path), "" for the null sender
	Local  []Target
	Remote []QueueRecipient
	DSN    DSN
	// EnforceQuota refuses the whole delivery with ErrQuota when a local
	// target's account would exceed its quota.
	EnforceQuota bool
}

// QueueEntry is one queued message for one or more recipients of one
// destination domain.
type QueueEntry struct {
	ID          int64
	BlobID      string
	From        string
	Domain      string
	Recipients  []QueueRecipient
	DSN         DSN
	Attempts    int
	NextAttempt time.Time
	LastError   string
	Created     time.Time
	LeaseOwner  string
	LeaseUntil  time.Time
}

// LeaseRequest asks Store.LeaseQueue for due queue entries.
type LeaseRequest struct {
	Owner     string        // who holds the leases, e.g. "host:pid"
	Now       time.Time     // entries due at or before Now, leases expired at Now
	For       time.Duration // lease length; longer than any one attempt
	Max       int           // at most this many entries
	PerDomain int           // at most this many per domain; 0 means no limit
	// Busy counts the attempts the caller already runs per destination
	// domain; they count against PerDomain.
	Busy map[string]int
}

// QueueUpdate is the outcome of one delivery attempt on a leased queue
// entry (Store.UpdateQueueEntry).
type QueueUpdate struct {
	ID    int64
	Owner string // the lease holder
	// Remaining are the recipients still to be tried; empty when every
	// recipient was delivered or failed for good.
	Remaining   []QueueRecipient
	NextAttempt time.Time
	LastError   string
	Events      []Event // recorded with the update; QueueID is set to ID
}

// Event is one step of a message's journey (received, queued, attempt,
// delivered, deferred, bounced).
type Event struct {
	ID      int64
	QueueID int64
	Time    time.Time
	Kind    string
	Detail  string
}

// FlagOp says how StoreFlags combines the given flags with those present.
type FlagOp int

const (
	FlagsAdd FlagOp = iota
	FlagsRemove
	FlagsReplace
)

// Changes is what happened in a mailbox after a MODSEQ.
type Changes struct {
	HighestModSeq uint64
	UIDNext       uint32
	Changed       []MessageMeta // new or flag-changed messages, by UID
	Vanished      []uint32      // expunged UIDs, ascending
}

// Store is the whole of Tern's state.
type Store interface {
	Close() error

	// Domains.
	AddDomain(ctx context.Context, name string) error
	GetDomain(ctx context.Context, name string) (Domain, error)
	ListDomains(ctx context.Context) ([]Domain, error)
	// RemoveDomain fails with ErrInUse while accounts or aliases exist in
	// the domain, unless force, which removes them too.
	RemoveDomain(ctx context.Context, name string, force bool) error
	SetCatchAll(ctx context.Context, domain, target string) error

	// Accounts. AddAccount creates the DefaultMailboxes too.
	AddAccount(ctx context.Context, a Account) (Account, error)
	GetAccount(ctx context.Context, address string) (Account, error)
	GetAccountByID(ctx context.Context, id int64) (Account, error)
	ListAccounts(ctx context.Context, domain string) ([]Account, error) // domain "" lists all
	// SetPassword replaces the password hash and the SCRAM keys together:
	// both come from the same password.
	SetPassword(ctx context.Context, accountID int64, hash, scram string) error
	// SetSCRAM sets the SCRAM keys of an account whose password hash is
	// still hash, the one the password they were derived from was
	// verified against. If the password changed meanwhile, nothing is
	// written and the error wraps ErrNotFound, like for a removed account.
	SetSCRAM(ctx context.Context, accountID int64, hash, scram string) error
	SetQuota(ctx context.Context, accountID int64, bytes int64) error
	SetAdmin(ctx context.Context, accountID int64, admin bool) error
	RemoveAccount(ctx context.Context, accountID int64) error

	// Aliases.
	AddAlias(ctx context.Context, a Alias) error
	GetAlias(ctx context.Context, address string) (Alias, error)
	ListAliases(ctx context.Context, domain string) ([]Alias, error)
	RemoveAlias(ctx context.Context, address string) error

	// Mailboxes.
	ListMailboxes(ctx context.Context, accountID int64) ([]Mailbox, error)
	GetMailbox(ctx context.Context, accountID int64, name string) (Mailbox, error) // ErrNoSuchMailbox
	MailboxStatus(ctx context.Context, mailboxID int64) (MailboxStatus, error)
	CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (Mailbox, error)
	// DeleteMailbox removes the mailbox and its messages; INBOX cannot be
	// deleted (ErrInvalid).
	DeleteMailbox(ctx context.Context, accountID int64, name string) error
	// RenameMailbox renames the mailbox and its children (RFC 3501 §6.3.5).
	// Renaming INBOX moves its messages into a new mailbox and leaves INBOX
	// empty.
	RenameMailbox(ctx context.Context, accountID int64, from, to string) error
	SetSubscribed(ctx context.Context, accountID int64, name string, on bool) error

	// Spool reads a message body of at most maxSize bytes (ErrTooBig past
	// it, after reading no more than maxSize+1 bytes) and makes it ready to
	// be referenced by Deliver.
	Spool(ctx context.Context, r io.Reader, maxSize int64) (*Blob, error)
	// Deliver files one spooled body into every local target and queues it
	// for every remote recipient, in one transaction. Concurrent calls are
	// committed together (group commit). It returns once durable.
	Deliver(ctx context.Context, d *Delivery) ([]Delivered, error)
	// DeliverAll files several deliveries in one transaction, all or
	// none (IMAP MULTIAPPEND, RFC 3502): if any fails, none of them
	// leaves anything and the error is that one's. The results are in
	// the order of ds, and deliveries into one mailbox get its UIDs in
	// that order. Like Deliver, it is committed with concurrent
	// deliveries (as one savepoint of the group) and returns once
	// durable.
	DeliverAll(ctx context.Context, ds []*Delivery) ([][]Delivered, error)
	OpenBlob(ctx context.Context, id string) (BlobReader, error)

	// Messages. UIDs arguments are ascending; UIDs that do not exist are
	// ignored.
	ListMessages(ctx context.Context, mailboxID int64) ([]MessageMeta, error)
	GetMessages(ctx context.Context, mailboxID int64, uids []uint32) ([]Message, error)
	ChangesSince(ctx context.Context, mailboxID int64, modseq uint64) (Changes, error)
	// StoreFlags changes flags of the given messages and returns their new
	// state. With unchangedSince > 0 (CONDSTORE), messages whose MODSEQ is
	// greater are left alone and returned in failed.
	StoreFlags(ctx context.Context, mailboxID int64, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []MessageMeta, failed []uint32, err error)
	// Expunge removes the messages, leaving tombstones, and returns the
	// UIDs removed.
	Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error)
	// Copy files the messages into dst without copying bodies; it returns
	// the source UIDs and the new UIDs in order. Move does the same and
	// expunges the sources in the same transaction.
	Copy(ctx context.Context, srcMailboxID int64, uids []uint32, dstMailboxID int64) (src, dst []uint32, err error)
	Move(ctx context.Context, srcMailboxID int64, uids []uint32, dstMailboxID int64) (src, dst []uint32, err error)

	// Subscribe returns a channel signalled (coalesced, never blocking the
	// writer) after any change to the account's mailboxes commits. cancel
	// releases it.
	Subscribe(accountID int64) (ch <-chan struct{}, cancel func())

	// Lock takes a named exclusive lock (e.g. a POP3 maildrop) or fails
	// with ErrInUse. release frees it; a crashed holder frees it too.
	Lock(ctx context.Context, name string) (release func(), err error)

	// Queue.
	ListQueue(ctx context.Context) ([]QueueEntry, error)
	GetQueueEntry(ctx context.Context, id int64) (QueueEntry, []Event, error)
	AddEvent(ctx context.Context, e Event) error

	// Outbound queue, for the relay.
	//
	// LeaseQueue claims up to req.Max entries whose next attempt is due at
	// req.Now and that hold no live lease (lease_until > now), leasing them
	// to req.Owner until Now+For, soonest first, at most req.PerDomain per
	// destination domain counting req.Busy. A worker that dies loses
	// its leases when they expire. SQLite has one writer, so a plain
	// UPDATE claims atomically; PostgreSQL selects the rows with
	// FOR UPDATE SKIP LOCKED so nodes never wait for each other.
	LeaseQueue(ctx context.Context, req LeaseRequest) ([]QueueEntry, error)
	// UpdateQueueEntry records the outcome of an attempt on an entry
	// leased by u.Owner (ErrNotFound when the entry is gone or its lease
	// was lost): it adds u.Events, counts the attempt and releases the
	// lease, all in one transaction. When u.Remaining is empty the entry
	// is removed (and its body reference dropped); otherwise it keeps only
	// u.Remaining, to be tried again at u.NextAttempt.
	UpdateQueueEntry(ctx context.Context, u QueueUpdate) error
	// RemoveQueueEntry drops an entry whatever its state (an operator's
	// "queue remove") and its body reference; ErrNotFound if absent.
	RemoveQueueEntry(ctx context.Context, id int64) error
	// RetryQueueEntry makes an entry due at now; ErrNotFound if absent.
	RetryQueueEntry(ctx context.Context, id int64, now time.Time) error
	// ReleaseLeases frees the leases held by owner and returns how many:
	// a relay starting under its stable node name takes back at once what
	// its killed predecessor held, instead of waiting for the leases to
	// expire.
	ReleaseLeases(ctx context.Context, owner string) (int, error)
	// QueueEvents returns the journey of a queue entry, oldest first,
	// also after the entry is gone (delivered, bounced or removed).
	QueueEvents(ctx context.Context, id int64) ([]Event, error)

	// CollectGarbage removes blobs nothing references and spool files
	// older than minAge; it returns how many it removed.
	CollectGarbage(ctx context.Context, minAge time.Duration) (int, error)
	// Check verifies the store's invariants (UIDs ascending and unique,
	// counts, blob references and reference counts) and returns every
	// problem found.
	Check(ctx context.Context) ([]string, error)
}
