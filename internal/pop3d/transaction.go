package pop3d

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/store"
)

// maildrop is the state of the TRANSACTION state: the locked INBOX as it
// was at login.
type maildrop struct {
	accountID   int64
	mailboxID   int64
	uidValidity uint32
	msgs        []message // index i is message number i+1
	release     func()
}

// message is all a session keeps per message: 16 bytes.
type message struct {
	size    int64
	uid     uint32
	deleted bool
}

// lockName is the store lock that makes a maildrop exclusive (RFC 1939 §8).
func lockName(accountID int64) string {
	return "pop3:" + strconv.FormatInt(accountID, 10)
}

// loggedIn locks and opens the account's maildrop and enters the
// TRANSACTION state, or answers why it cannot (RFC 2449 §8.1 IN-USE).
func (ss *session) loggedIn(acct store.Account) {
	release, err := ss.s.st.Lock(ss.ctx, lockName(acct.ID))
	if errors.Is(err, store.ErrInUse) {
		ss.log.Info("pop3 maildrop in use", "user", acct.Address)
		ss.err("[IN-USE] maildrop is in use by another session")
		return
	}
	if err != nil {
		ss.log.Error("pop3 lock maildrop", "user", acct.Address, "err", err)
		ss.err("[SYS/TEMP] cannot open maildrop, try again later")
		return
	}
	drop, err := ss.openMaildrop(acct.ID)
	if err != nil {
		release()
		ss.log.Error("pop3 open maildrop", "user", acct.Address, "err", err)
		ss.err("[SYS/TEMP] cannot open maildrop, try again later")
		return
	}
	drop.release = release
	ss.drop = drop
	ss.state = stateTransaction
	ss.log = ss.log.With("user", acct.Address)
	n, size := drop.stat()
	ss.log.Info("pop3 login", "messages", n, "size", size)
	ss.ok("maildrop has %d messages (%d octets)", n, size)
}

// openMaildrop snapshots the UIDs and sizes of the account's INBOX.
func (ss *session) openMaildrop(accountID int64) (*maildrop, error) {
	mb, err := ss.s.st.GetMailbox(ss.ctx, accountID, "INBOX")
	if err != nil {
		return nil, fmt.Errorf("get INBOX: %w", err)
	}
	metas, err := ss.s.st.ListMessages(ss.ctx, mb.ID)
	if err != nil {
		return nil, fmt.Errorf("list INBOX: %w", err)
	}
	msgs := make([]message, len(metas))
	for i, m := range metas {
		msgs[i] = message{uid: m.UID, size: m.Size}
	}
	slices.SortFunc(msgs, func(a, b message) int { return cmp.Compare(a.uid, b.uid) })
	return &maildrop{
		accountID:   accountID,
		mailboxID:   mb.ID,
		uidValidity: mb.UIDValidity,
		msgs:        slices.Clip(msgs),
	}, nil
}

// closeMaildrop releases the lock without deleting anything: the end of a
// session other than QUIT (RFC 1939 §6).
func (ss *session) closeMaildrop() {
	if ss.drop != nil {
		ss.drop.release()
		ss.drop = nil
	}
}

// stat counts the messages not marked deleted and their octets.
func (d *maildrop) stat() (n int, size int64) {
	for _, m := range d.msgs {
		if !m.deleted {
			n++
			size += m.size
		}
	}
	return n, size
}

func (d *maildrop) uidl(m *message) string {
	return strconv.FormatUint(uint64(d.uidValidity), 10) + "." + strconv.FormatUint(uint64(m.uid), 10)
}

// update is RFC 1939 §6: expunge the messages marked deleted, durably,
// then release the maildrop.
func (ss *session) update() error {
	var uids []uint32
	for _, m := range ss.drop.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	if len(uids) > 0 {
		if _, err := ss.s.st.Expunge(ss.ctx, ss.drop.mailboxID, uids); err != nil {
			ss.log.Error("pop3 expunge", "err", err)
			return err
		}
	}
	ss.log.Info("pop3 logout", "deleted", len(uids))
	ss.closeMaildrop()
	return nil
}

func (ss *session) dispatchTransaction(cmd, arg string) (quit bool) {
	switch cmd {
	case "STAT":
		if arg != "" {
			return ss.badCommand("STAT takes no argument")
		}
		n, size := ss.drop.stat()
		ss.ok("%d %d", n, size)
	case "LIST":
		return ss.cmdList(arg)
	case "UIDL":
		return ss.cmdUidl(arg)
	case "RETR":
		return ss.cmdRetr(arg)
	case "TOP":
		return ss.cmdTop(arg)
	case "DELE":
		m, n, quit, ok := ss.msgArg(arg)
		if !ok {
			return quit
		}
		m.deleted = true
		ss.ok("message %d deleted", n)
	case "NOOP":
		if arg != "" {
			return ss.badCommand("NOOP takes no argument")
		}
		ss.ok("")
	case "RSET":
		if arg != "" {
			return ss.badCommand("RSET takes no argument")
		}
		for i := range ss.drop.msgs {
			ss.drop.msgs[i].deleted = false
		}
		n, size := ss.drop.stat()
		ss.ok("maildrop has %d messages (%d octets)", n, size)
	case "USER", "PASS", "AUTH", "STLS":
		return ss.badCommand("already logged in")
	default:
		return ss.badCommand("unknown command")
	}
	return false
}

// msgArg parses a message-number argument (RFC 1939 §5) and finds a
// message not marked deleted. When !ok it has answered, and quit says
// whether the session must close.
func (ss *session) msgArg(arg string) (m *message, n int, quit, ok bool) {
	if arg == "" {
		return nil, 0, ss.badCommand("message number required"), false
	}
	for _, c := range []byte(arg) {
		if c < '0' || c > '9' {
			return nil, 0, ss.badCommand("invalid message number"), false
		}
	}
	u, err := strconv.ParseUint(arg, 10, 32)
	if err != nil || u == 0 || u > uint64(len(ss.drop.msgs)) {
		// Overflowing numbers are out of range, not malformed.
		ss.err("no such message, only %d in maildrop", len(ss.drop.msgs))
		return nil, 0, false, false
	}
	n = int(u)
	m = &ss.drop.msgs[n-1]
	if m.deleted {
		ss.err("message %d already deleted", n)
		return nil, 0, false, false
	}
	return m, n, false, true
}

// cmdList is RFC 1939 §5 LIST: sizes as stored.
func (ss *session) cmdList(arg string) bool {
	if arg != "" {
		m, n, quit, ok := ss.msgArg(arg)
		if ok {
			ss.ok("%d %d", n, m.size)
		}
		return quit
	}
	n, size := ss.drop.stat()
	ss.ok("%d messages (%d octets)", n, size)
	var buf []byte
	for i, m := range ss.drop.msgs {
		if !m.deleted {
			buf = strconv.AppendInt(buf[:0], int64(i+1), 10)
			buf = append(buf, ' ')
			buf = strconv.AppendInt(buf, m.size, 10)
			buf = append(buf, '\r', '\n')
			ss.bw.Write(buf)
		}
	}
	ss.line(".")
	return false
}

// cmdUidl is RFC 1939 §7 UIDL.
func (ss *session) cmdUidl(arg string) bool {
	if arg != "" {
		m, n, quit, ok := ss.msgArg(arg)
		if ok {
			ss.ok("%d %s", n, ss.drop.uidl(m))
		}
		return quit
	}
	ss.ok("unique-id listing follows")
	for i := range ss.drop.msgs {
		if m := &ss.drop.msgs[i]; !m.deleted {
			ss.line(strconv.Itoa(i+1) + " " + ss.drop.uidl(m))
		}
	}
	ss.line(".")
	return false
}

// cmdRetr is RFC 1939 §5 RETR.
func (ss *session) cmdRetr(arg string) bool {
	m, _, quit, ok := ss.msgArg(arg)
	if !ok {
		return quit
	}
	return ss.sendMessage(m, fmt.Sprintf("%d octets", m.size), -1)
}

// cmdTop is RFC 1939 §7 TOP: the header, the blank line, and the first
// lines of the body.
func (ss *session) cmdTop(arg string) bool {
	msgNum, linesArg, ok := strings.Cut(arg, " ")
	if !ok || linesArg == "" || strings.Contains(linesArg, " ") {
		return ss.badCommand("usage: TOP msg n")
	}
	for _, c := range []byte(linesArg) {
		if c < '0' || c > '9' {
			return ss.badCommand("invalid line count")
		}
	}
	lines, err := strconv.ParseInt(linesArg, 10, 64)
	if err != nil { // only overflow is left: more lines than any message has
		lines = -1
	}
	m, _, quit, ok := ss.msgArg(msgNum)
	if !ok {
		return quit
	}
	return ss.sendMessage(m, "top of message follows", lines)
}
