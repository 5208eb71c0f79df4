// Package deliver is the one way mail enters Tern: SMTP (port 25 and
// submission), IMAP APPEND, web sending and bounces all call it.
//
// Resolve maps a recipient address to local accounts and remote addresses
// (accounts, aliases with one or many targets, catch-all, plus-addressing,
// case-insensitive local parts, IDN domains in their A-label form). Deliver
// spools the body once, parses it once (msginfo), then files it into every
// local mailbox and queues it for every remote recipient in one store
// transaction.
//
// The contract: nothing is visible to any reader before Deliver or Append
// returns nil; everything is durable when it does. On error nothing was
// delivered.
package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/msginfo"
	"github.com/ternmail/tern/internal/srs"
	"github.com/ternmail/tern/internal/store"
)

var (
	// ErrUnknownUser: the domain is ours but nobody receives at the address.
	ErrUnknownUser = errors.New("no such user")
	// ErrNotLocal: the domain is not ours.
	ErrNotLocal = errors.New("domain not served here")
	// ErrBadAddress: the address is syntactically invalid or too long.
	ErrBadAddress = errors.New("invalid address")
	// ErrRelayUnavailable: remote recipients cannot be queued (relaying
	// is disabled in the configuration).
	ErrRelayUnavailable = errors.New("relaying to remote domains is not available")
)

// Config holds delivery policy.
type Config struct {
	MaxMessageBytes int64 // the largest body accepted
	// Relay allows remote recipients to be queued for the outbound relay.
	Relay bool
	// SRS, when set, rewrites the sender of mail forwarded to remote
	// addresses and takes bounces to the rewritten addresses back (see
	// srs.go); nil leaves forwarded mail with its sender.
	SRS *srs.Rewriter
}

// Deliverer is safe for concurrent use.
type Deliverer struct {
	st  store.Store
	cfg Config
	log *slog.Logger
}

// Recipient is one resolved RCPT: where its copy of a message goes.
type Recipient struct {
	Address  string  // canonical form of the address given
	Accounts []int64 // local accounts receiving into INBOX, deduplicated
	Remote   []string
}

// Message is one message to deliver.
type Message struct {
	From       string // envelope sender, "" for the null sender
	Recipients []Recipient
	DSN        store.DSN
	Notify     map[string]string // RFC 3461 NOTIFY per recipient address
	Body       io.Reader         // the whole message, with any trace headers already prepended
	// Junk files the local copies into each account's "Junk" mailbox
	// instead of INBOX (a DMARC quarantine, RFC 7489 §6.3, decided by
	// the MX); an account without a Junk mailbox gets the copy in INBOX.
	Junk bool
}

// New returns a Deliverer writing into st.
func New(st store.Store, cfg Config, log *slog.Logger) *Deliverer {
	return &Deliverer{st: st, cfg: cfg, log: log}
}

// maxAliasDepth bounds alias chains; accounts.Manager refuses deeper
// chains and loops when aliases are added, this guards what is stored.
const maxAliasDepth = 10

// Resolve maps address to its targets. It returns ErrNotLocal for a
// foreign domain (callers decide whether that is a relay), ErrUnknownUser
// when the domain is ours but nothing receives there, ErrBadAddress for an
// invalid address, ErrRelayUnavailable when an alias forwards to a remote
// address and relaying is off, and store.ErrQuota when every local account
// it reaches is already full.
func (d *Deliverer) Resolve(ctx context.Context, address string) (Recipient, error) {
	if rc, ok, err := d.resolveSRS(ctx, address); ok {
		return rc, err
	}
	addr, err := accounts.NormalizeAddress(address)
	if err != nil {
		return Recipient{}, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	r := Recipient{Address: addr}
	x := &expansion{seen: map[string]bool{}, accounts: map[int64]store.Account{}}
	if err := d.expand(ctx, addr, 0, x, &r); err != nil {
		return Recipient{}, err
	}
	if len(r.Remote) > 0 && !d.cfg.Relay {
		return Recipient{}, ErrRelayUnavailable
	}
	if len(r.Accounts) > 0 && len(r.Remote) == 0 {
		full := 0
		for _, id := range r.Accounts {
			if a := x.accounts[id]; a.QuotaBytes > 0 && a.UsedBytes >= a.QuotaBytes {
				full++
			}
		}
		if full == len(r.Accounts) {
			return Recipient{}, fmt.Errorf("%s: %w", addr, store.ErrQuota)
		}
	}
	return r, nil
}

// expansion is what one Resolve has seen: the addresses already expanded
// (an alias loop or a target named twice gives one copy) and the accounts
// reached, kept so their quotas need no second lookup.
type expansion struct {
	seen     map[string]bool
	accounts map[int64]store.Account
}

// Remote returns the recipient for an address in a foreign domain, for
// authenticated submission. It fails with ErrRelayUnavailable when
// relaying is off.
func (d *Deliverer) Remote(address string) (Recipient, error) {
	addr, err := accounts.NormalizeAddress(address)
	if err != nil {
		return Recipient{}, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	if !d.cfg.Relay {
		return Recipient{}, ErrRelayUnavailable
	}
	return Recipient{Address: addr, Remote: []string{addr}}, nil
}

// expand adds addr's final targets to r: an account, an alias's targets
// (recursively), the account or alias without a +tag, the domain's
// catch-all, or, for postmaster, the first admin account.
func (d *Deliverer) expand(ctx context.Context, addr string, depth int, x *expansion, r *Recipient) error {
	if x.seen[addr] {
		return nil // an alias loop or a target named twice: one copy
	}
	x.seen[addr] = true
	if depth > maxAliasDepth {
		return fmt.Errorf("%w: alias chain deeper than %d at %s", ErrUnknownUser, maxAliasDepth, addr)
	}
	local, domain, err := accounts.SplitAddress(addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	dom, err := d.st.GetDomain(ctx, domain)
	if errors.Is(err, store.ErrNotFound) {
		if depth == 0 {
			return ErrNotLocal
		}
		r.Remote = appendUnique(r.Remote, addr)
		return nil
	} else if err != nil {
		return err
	}
	candidates := []string{addr}
	if base := accounts.StripTag(local); base != local {
		candidates = append(candidates, base+"@"+domain)
	}
	for _, c := range candidates {
		found, err := d.expandExact(ctx, c, depth, x, r)
		if found || err != nil {
			return err
		}
	}
	if dom.CatchAll != "" && dom.CatchAll != addr {
		return d.expand(ctx, dom.CatchAll, depth+1, x, r)
	}
	if accounts.StripTag(local) == "postmaster" {
		// RFC 5321 §4.5.1: postmaster must be deliverable for every
		// domain we accept mail for.
		return d.expandPostmaster(ctx, x, r)
	}
	return ErrUnknownUser
}

// expandExact resolves addr as an account or an alias, without tag
// stripping or catch-all, and reports whether it exists.
func (d *Deliverer) expandExact(ctx context.Context, addr string, depth int, x *expansion, r *Recipient) (bool, error) {
	a, err := d.st.GetAccount(ctx, addr)
	if err == nil {
		r.Accounts = appendUnique(r.Accounts, a.ID)
		x.accounts[a.ID] = a
		return true, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	al, err := d.st.GetAlias(ctx, addr)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	for _, t := range al.Targets {
		if err := d.expand(ctx, t, depth+1, x, r); err != nil && !errors.Is(err, ErrUnknownUser) {
			return true, err
		}
	}
	if len(r.Accounts) == 0 && len(r.Remote) == 0 {
		return true, ErrUnknownUser
	}
	return true, nil
}

func (d *Deliverer) expandPostmaster(ctx context.Context, x *expansion, r *Recipient) error {
	all, err := d.st.ListAccounts(ctx, "")
	if err != nil {
		return err
	}
	for _, a := range all {
		if a.Admin {
			r.Accounts = appendUnique(r.Accounts, a.ID)
			x.accounts[a.ID] = a
			return nil
		}
	}
	return ErrUnknownUser
}

func appendUnique[T comparable](s []T, v T) []T {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// Deliver stores m for all its recipients, once, durably. It returns nil
// only when every local copy is filed and every remote recipient queued.
func (d *Deliverer) Deliver(ctx context.Context, m *Message) error {
	if len(m.Recipients) == 0 {
		return fmt.Errorf("deliver: %w: no recipients", store.ErrInvalid)
	}
	var local []store.Target
	var remote []store.QueueRecipient
	seenAcct := map[int64]bool{}
	seenRemote := map[string]bool{}
	mailbox := "INBOX"
	if m.Junk {
		mailbox = "Junk"
	}
	for _, rc := range m.Recipients {
		for _, id := range rc.Accounts {
			if !seenAcct[id] {
				seenAcct[id] = true
				local = append(local, store.Target{AccountID: id, Mailbox: mailbox})
			}
		}
		for _, addr := range rc.Remote {
			if !seenRemote[addr] {
				seenRemote[addr] = true
				remote = append(remote, store.QueueRecipient{Address: addr, Notify: m.Notify[rc.Address], Original: rc.Address})
			}
		}
	}
	if len(remote) > 0 && !d.cfg.Relay {
		return ErrRelayUnavailable
	}
	blob, info, err := d.spool(ctx, m.Body)
	if err != nil {
		return err
	}
	from, err := d.forwardSender(ctx, m, len(remote) > 0)
	if err != nil {
		return err
	}
	del := &store.Delivery{
		Blob: blob, Info: info, From: from,
		Local: local, Remote: remote, DSN: m.DSN,
		// A recipient at its quota was refused at RCPT by Resolve; a
		// message that only now pushes an account past it is accepted,
		// since refusing one recipient here would fail them all.
		EnforceQuota: false,
	}
	_, err = d.st.Deliver(ctx, del)
	if m.Junk && errors.Is(err, store.ErrNoSuchMailbox) {
		// Someone deleted their Junk: INBOX rather than nothing. The
		// failed delivery left nothing behind (store contract).
		for i := range local {
			local[i].Mailbox = "INBOX"
		}
		_, err = d.st.Deliver(ctx, del)
	}
	if err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	d.log.Info("received", "blob", blob.ID, "size", blob.Size, "from", m.From,
		"local", len(local), "remote", len(remote))
	return nil
}

// Append files body into one mailbox of one account (IMAP APPEND, Sent,
// Drafts), with flags and an internal date (zero means now). The account's
// quota is enforced (store.ErrQuota).
func (d *Deliverer) Append(ctx context.Context, accountID int64, mailbox string, flags []string, date time.Time, body io.Reader) (store.Delivered, error) {
	blob, info, err := d.spool(ctx, body)
	if err != nil {
		return store.Delivered{}, err
	}
	res, err := d.st.Deliver(ctx, &store.Delivery{
		Blob: blob, Info: info,
		Local:        []store.Target{{AccountID: accountID, Mailbox: mailbox, Flags: flags, InternalDate: date}},
		EnforceQuota: true,
	})
	if err != nil {
		return store.Delivered{}, fmt.Errorf("append: %w", err)
	}
	if len(res) != 1 {
		return store.Delivered{}, fmt.Errorf("append: store filed %d copies, want 1", len(res))
	}
	return res[0], nil
}

// spool writes the body into the store and parses it once.
func (d *Deliverer) spool(ctx context.Context, body io.Reader) (*store.Blob, *msginfo.Info, error) {
	blob, err := d.st.Spool(ctx, body, d.cfg.MaxMessageBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	var ra io.ReaderAt
	if blob.Data != nil || blob.Path == "" {
		ra = bytes.NewReader(blob.Data)
	} else {
		f, err := os.Open(blob.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("spool: %w", err)
		}
		defer f.Close()
		ra = f
	}
	info, err := msginfo.Parse(ra, blob.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("parse: %w", err)
	}
	return blob, info, nil
}

// Spooled is a message body written into the store and parsed, not yet
// filed anywhere (see AppendAll).
type Spooled struct {
	blob *store.Blob
	info *msginfo.Info
}

// Size is the body's size in octets.
func (s *Spooled) Size() int64 { return s.blob.Size }

// Spool writes body into the store and parses it, for AppendAll: a door
// that receives several messages in one command spools each as it
// arrives instead of holding it in memory.
func (d *Deliverer) Spool(ctx context.Context, body io.Reader) (*Spooled, error) {
	blob, info, err := d.spool(ctx, body)
	if err != nil {
		return nil, err
	}
	return &Spooled{blob: blob, info: info}, nil
}

// AppendItem is one message of AppendAll.
type AppendItem struct {
	Flags []string
	Date  time.Time // internal date; zero means now
	Body  *Spooled
}

// AppendAll files every item into one mailbox of one account, all or
// none, in one store transaction (IMAP MULTIAPPEND, RFC 3502). The quota
// is enforced for the total (store.ErrQuota). The results are in the
// order of items, with UIDs ascending in that order.
func (d *Deliverer) AppendAll(ctx context.Context, accountID int64, mailbox string, items []AppendItem) ([]store.Delivered, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("append: %w: no messages", store.ErrInvalid)
	}
	ds := make([]*store.Delivery, len(items))
	for i, it := range items {
		if it.Body == nil {
			return nil, fmt.Errorf("append: %w: message %d has no body", store.ErrInvalid, i+1)
		}
		ds[i] = &store.Delivery{
			Blob: it.Body.blob, Info: it.Body.info,
			Local:        []store.Target{{AccountID: accountID, Mailbox: mailbox, Flags: it.Flags, InternalDate: it.Date}},
			EnforceQuota: true,
		}
	}
	var res [][]store.Delivered
	var err error
	if len(ds) == 1 {
		// The common APPEND of one message: an ordinary delivery, which
		// the store commits with less work than a group.
		var r []store.Delivered
		r, err = d.st.Deliver(ctx, ds[0])
		res = [][]store.Delivered{r}
	} else {
		res, err = d.st.DeliverAll(ctx, ds)
	}
	if err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	out := make([]store.Delivered, len(res))
	for i, r := range res {
		if len(r) != 1 {
			return nil, fmt.Errorf("append: store filed %d copies of message %d, want 1", len(r), i+1)
		}
		out[i] = r[0]
	}
	return out, nil
}
