package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/dsn"
	"github.com/ternmail/tern/internal/mx"
	"github.com/ternmail/tern/internal/store"
)

// What became of one recipient in one attempt.
type state int

const (
	delivered state = iota
	temporary
	permanent
)

type outcome struct {
	rcpt   store.QueueRecipient
	state  state
	status string // enhanced status code for the DSN
	host   string // the MX that replied, "" when the reason is ours
	reason string // the peer's reply or our diagnosis, one line
}

// attempt tries one leased entry once and records the outcome.
func (r *Relay) attempt(ctx context.Context, e store.QueueEntry) {
	log := r.log.With("queue", e.ID, "domain", e.Domain)
	var evs []store.Event
	outs := r.try(ctx, e, log, &evs)
	now := r.deps.Now()
	expired := now.Sub(e.Created) >= r.cfg.Lifetime
	var remaining []store.QueueRecipient
	var failed []outcome
	var lastErr string
	for _, o := range outs {
		switch {
		case o.state == delivered:
			evs = append(evs, store.Event{Kind: "delivered", Detail: fmt.Sprintf("%s: %s: %s", o.rcpt.Address, o.host, o.reason)})
			log.Info("delivered", "to", o.rcpt.Address, "host", o.host, "reply", o.reason)
			r.delivered.Add(1)
		case o.state == permanent || expired:
			if o.state == temporary {
				// RFC 3463 4.4.7: delivery time expired.
				o.state, o.status = permanent, "4.4.7"
				o.reason = fmt.Sprintf("gave up after %s: %s", r.cfg.Lifetime, o.reason)
			}
			failed = append(failed, o)
			evs = append(evs, store.Event{Kind: "bounced", Detail: o.rcpt.Address + ": " + o.reason})
			log.Warn("bounced", "to", o.rcpt.Address, "host", o.host, "reason", o.reason)
			r.bounced.Add(1)
		default:
			remaining = append(remaining, o.rcpt)
			lastErr = o.reason
		}
	}
	next := now.Add(nextDelay(r.cfg.BaseDelay, e.Attempts+1))
	if errors.Is(ctx.Err(), context.Canceled) {
		next = now // interrupted by shutdown: try again as soon as we run
	}
	for _, rc := range remaining {
		evs = append(evs, store.Event{Kind: "deferred", Detail: fmt.Sprintf("%s: %s (next attempt %s)", rc.Address, lastErr, next.UTC().Format(time.RFC3339))})
		log.Info("deferred", "to", rc.Address, "reason", lastErr, "next", next)
		r.deferred.Add(1)
	}
	// Record even when shutting down: the outcome must not be lost.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if len(failed) > 0 {
		evs = append(evs, r.bounce(sctx, e, failed, log))
	}
	if len(remaining) > 0 && r.cfg.DelayWarning > 0 && now.Sub(e.Created) >= r.cfg.DelayWarning {
		if ev, ok := r.warnDelay(sctx, e, outs, log); ok {
			evs = append(evs, ev)
		}
	}
	err := r.deps.Store.UpdateQueueEntry(sctx, store.QueueUpdate{
		ID: e.ID, Owner: r.owner, Remaining: remaining, NextAttempt: next, LastError: lastErr, Events: evs,
	})
	if err != nil {
		log.Error("recording attempt", "err", err)
	}
}

// try runs the attempt proper and returns one outcome per recipient.
func (r *Relay) try(ctx context.Context, e store.QueueEntry, log *slog.Logger, evs *[]store.Event) []outcome {
	all := func(st state, status, host, reason string) []outcome {
		out := make([]outcome, len(e.Recipients))
		for i, rc := range e.Recipients {
			out[i] = outcome{rcpt: rc, state: st, status: status, host: host, reason: reason}
		}
		return out
	}
	hosts, err := r.deps.Resolver.Lookup(ctx, e.Domain)
	if err != nil {
		*evs = append(*evs, store.Event{Kind: "lookup", Detail: err.Error()})
		if mx.IsPermanent(err) {
			return all(permanent, "5.4.4", "", err.Error()) // RFC 3463: unable to route
		}
		return all(temporary, "4.4.3", "", err.Error()) // directory server failure
	}
	hosts, verify, reason := r.applySTS(ctx, e.Domain, hosts, log, evs)
	if len(hosts) == 0 {
		return all(temporary, "4.7.5", "", reason) // RFC 3463: cryptographic failure
	}
	body, err := r.deps.Store.OpenBlob(ctx, e.BlobID)
	if err != nil {
		return all(temporary, "4.3.0", "", "reading the queued message: "+err.Error())
	}
	defer body.Close()
	// Signed at each attempt rather than once at submission, so a key
	// rotated meanwhile signs, the stored copy stays as written (RFC 6376
	// §5: the signer may be any MTA on the way), and a copy converted
	// for a 7-bit peer is signed as sent.
	msg, err := newOutgoing(body, r.deps.Signer, log)
	if err != nil {
		return all(temporary, "4.3.0", "", "reading the queued message: "+err.Error())
	}
	env := envelope{from: e.From, ret: e.DSN.Ret, envID: e.DSN.EnvID, utf8: needsUTF8(e, body)}
	for _, rc := range e.Recipients {
		env.rcpts = append(env.rcpts, rcpt{addr: rc.Address, notify: rc.Notify, orcpt: rc.ORcpt})
	}
	lastErr := "no host could be reached"
	for _, h := range hosts {
		for _, a := range h.Addrs {
			if ctx.Err() != nil {
				return all(temporary, "4.4.7", "", "attempt interrupted: "+context.Cause(ctx).Error())
			}
			*evs = append(*evs, store.Event{Kind: "attempt", Detail: fmt.Sprintf("to %s [%s]", h.Name, a)})
			log.Info("attempt", "host", h.Name, "addr", a.String())
			r.attempts.Add(1)
			replies, sec, err := r.sendTo(ctx, h.Name, a, env, msg, verify)
			if err == nil {
				*evs = append(*evs, store.Event{Kind: "session", Detail: h.Name + ": " + sec})
				out := make([]outcome, len(e.Recipients))
				for i, rc := range e.Recipients {
					rep := replies[i].oneLine()
					st := delivered
					if rep.Temporary() {
						st = temporary
					} else if rep.Permanent() {
						st = permanent
					}
					out[i] = outcome{rcpt: rc, state: st, status: rep.status(), host: h.Name, reason: rep.String()}
					*evs = append(*evs, store.Event{Kind: "reply", Detail: fmt.Sprintf("%s: RCPT %s: %s", h.Name, rc.Address, rep)})
				}
				return out
			}
			*evs = append(*evs, store.Event{Kind: "reply", Detail: h.Name + ": " + err.Error()})
			var re *ReplyError
			var pe *permError
			var te *tempError
			switch {
			case errors.As(err, &pe):
				return all(permanent, pe.status, h.Name, pe.msg)
			case errors.As(err, &te):
				return all(temporary, te.status, "", te.msg)
			case errors.As(err, &re) && re.Cmd == "MAIL" && re.Permanent():
				// The sender is refused: no other host will think otherwise.
				rep := re.Reply.oneLine()
				return all(permanent, rep.status(), h.Name, rep.String())
			}
			// Anything else (no connection, greeting or EHLO refused,
			// a 4xx to MAIL, a connection lost) is worth the next host
			// (RFC 5321 §5.1).
			lastErr = h.Name + ": " + oneLine(err.Error())
		}
	}
	return all(temporary, "4.4.1", "", lastErr)
}

// permError is a failure of ours that no retry cures.
type permError struct{ status, msg string }

func (e *permError) Error() string { return e.msg }

// tempError is a failure of ours that another host would not cure, but
// a later attempt may.
type tempError struct{ status, msg string }

func (e *tempError) Error() string { return e.msg }

var errTLS = errors.New("TLS failed")

// sendTo delivers over one connection to one address: with STARTTLS when
// offered; when the TLS handshake fails, once more in plaintext, since
// opportunistic TLS must not make mail undeliverable (RFC 7435 §3).
// It also says how the session was protected, for the journey.
//
// With verify (an MTA-STS policy in enforce mode), TLS with a certificate
// valid for host is required and there is no plaintext retry.
func (r *Relay) sendTo(ctx context.Context, host string, addr netip.Addr, env envelope, msg *outgoing, verify bool) ([]Reply, string, error) {
	if verify {
		return r.sendOnce(ctx, host, addr, env, msg, true, true)
	}
	replies, sec, err := r.sendOnce(ctx, host, addr, env, msg, true, false)
	if errors.Is(err, errTLS) {
		r.log.Warn("STARTTLS failed, retrying without TLS", "host", host, "err", err)
		replies, sec, err = r.sendOnce(ctx, host, addr, env, msg, false, false)
		sec += " (STARTTLS failed)"
	}
	return replies, sec, err
}

func (r *Relay) sendOnce(ctx context.Context, host string, addr netip.Addr, env envelope, msg *outgoing, useTLS, verify bool) ([]Reply, string, error) {
	key := net.JoinHostPort(addr.String(), Port)
	c, sec := r.pool.get(key)
	if c != nil && (!useTLS && c.tlsVersion != "" || verify && c.verified != host || c.reset() != nil) {
		c.quit()
		c = nil
	}
	if c == nil {
		var err error
		if c, sec, err = r.connect(ctx, host, key, useTLS, verify); err != nil {
			return nil, "", err
		}
	} else {
		sec += ", reused"
	}
	f, err := formFor(host, c, env, msg)
	if err != nil {
		r.pool.put(key, c, sec)
		return nil, "", err
	}
	env.prefix, env.size = f.prefix, f.size
	body := f.open(msg.blob)
	defer body.Close()
	replies, err := c.send(ctx, env, body)
	if err != nil {
		c.quit()
		return nil, "", err
	}
	r.pool.put(key, c, sec)
	if f.conv != nil {
		sec += ", converted to 7 bit"
	}
	return replies, sec, nil
}

// connect opens a session: greeting, EHLO, STARTTLS when offered and
// wanted.
func (r *Relay) connect(ctx context.Context, host, addr string, useTLS, verify bool) (*client, string, error) {
	dctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	conn, err := r.deps.Dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, "", err
	}
	c, err := newClient(ctx, conn, host, r.cfg.Hostname, timeouts{command: r.cfg.CommandTimeout, data: r.cfg.DataTimeout})
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	sec := "plaintext"
	if verify && !c.has("STARTTLS") {
		c.quit()
		return nil, "", fmt.Errorf("MTA-STS policy requires TLS and %s offers no STARTTLS", host)
	}
	if useTLS && c.has("STARTTLS") {
		cfg := r.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		if verify {
			// RFC 8461 §4.2: a certificate valid for the MX host name.
			cfg.InsecureSkipVerify, cfg.ServerName = false, host
		}
		if err := c.startTLS(ctx, cfg); err != nil {
			c.quit()
			if verify {
				return nil, "", fmt.Errorf("MTA-STS policy requires valid TLS: %v", err)
			}
			return nil, "", fmt.Errorf("%w: %v", errTLS, err)
		}
		sec = c.tlsVersion
		if verify {
			c.verified = host
			sec += " (certificate verified, MTA-STS)"
		}
	}
	return c, sec, nil
}

// formFor checks that the peer can take the message and returns the
// form it gets, which depends on its extensions.
func formFor(host string, c *client, env envelope, msg *outgoing) (*form, error) {
	if env.utf8 && !c.has("SMTPUTF8") {
		// RFC 6531 §3.5; RFC 6533 5.6.7: non-ASCII addresses unsupported.
		return nil, &permError{"5.6.7", host + " does not support SMTPUTF8, which this message needs"}
	}
	f := msg.formFor(c, host)
	if f.err != nil {
		return nil, f.err
	}
	return f, checkSize(host, c, f.size)
}

func checkSize(host string, c *client, size int64) error {
	if max, ok := c.ext["SIZE"]; ok && max != "" && max != "0" {
		var n int64
		if _, err := fmt.Sscan(max, &n); err == nil && n > 0 && size > n {
			// RFC 1870 §6.1; RFC 3463 5.3.4: message too big for system.
			return &permError{"5.3.4", fmt.Sprintf("message of %d bytes exceeds the %d bytes %s accepts", size, n, host)}
		}
	}
	return nil
}

// needsUTF8 reports whether the message needs SMTPUTF8: a non-ASCII
// address in the envelope or non-ASCII in the header (RFC 6532).
func needsUTF8(e store.QueueEntry, body store.BlobReader) bool {
	if !isASCII(e.From) {
		return true
	}
	for _, rc := range e.Recipients {
		if !isASCII(rc.Address) {
			return true
		}
	}
	head := make([]byte, 64<<10)
	n, _ := body.ReadAt(head, 0)
	head = head[:n]
	if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
		head = head[:i]
	}
	return !isASCII(string(head))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// warnDelay tells the sender, once per entry, which recipients are still
// waiting (RFC 3464 Action: delayed). It reports false when no warning is
// due: one was sent already, the sender is null, or NOTIFY excludes it.
func (r *Relay) warnDelay(ctx context.Context, e store.QueueEntry, outs []outcome, log *slog.Logger) (store.Event, bool) {
	if e.From == "" {
		return store.Event{}, false
	}
	evs, err := r.deps.Store.QueueEvents(ctx, e.ID)
	if err != nil {
		log.Error("reading the journey", "err", err)
		return store.Event{}, false
	}
	for _, ev := range evs {
		if ev.Kind == "dsn" && strings.HasPrefix(ev.Detail, "delay warning") {
			return store.Event{}, false
		}
	}
	now := r.deps.Now()
	rep := dsn.Report{ReportingMTA: r.cfg.Hostname, To: e.From, EnvID: e.DSN.EnvID,
		Arrival: e.Created, Date: now}
	for _, o := range outs {
		if o.state != temporary || !notifies(o.rcpt.Notify, "DELAY") {
			continue
		}
		rep.Recipients = append(rep.Recipients, dsn.Recipient{
			Final: o.rcpt.Address, Original: o.rcpt.ORcpt, Action: dsn.Delayed, Status: o.status,
			RemoteMTA: o.host, Diagnostic: o.reason, LastAttempt: now,
		})
	}
	if len(rep.Recipients) == 0 {
		return store.Event{}, false
	}
	if err := r.sendDSN(ctx, e, rep); err != nil {
		log.Error("delay warning not delivered", "to", e.From, "err", err)
		return store.Event{Kind: "dsn", Detail: "delay warning failed: " + err.Error()}, true
	}
	return store.Event{Kind: "dsn", Detail: "delay warning sent to " + e.From}, true
}

// bounce sends the sender a DSN about the failed recipients, through
// deliver, and returns the event recording it.
func (r *Relay) bounce(ctx context.Context, e store.QueueEntry, failed []outcome, log *slog.Logger) store.Event {
	if e.From == "" {
		// RFC 5321 §6.1: never bounce a bounce.
		return store.Event{Kind: "dsn", Detail: "none: null sender"}
	}
	now := r.deps.Now()
	rep := dsn.Report{ReportingMTA: r.cfg.Hostname, To: e.From, EnvID: e.DSN.EnvID, Ret: e.DSN.Ret,
		Arrival: e.Created, Date: now}
	for _, o := range failed {
		if !notifies(o.rcpt.Notify, "FAILURE") {
			continue
		}
		rep.Recipients = append(rep.Recipients, dsn.Recipient{
			Final: o.rcpt.Address, Original: o.rcpt.ORcpt, Action: dsn.Failed, Status: o.status,
			RemoteMTA: o.host, Diagnostic: o.reason, LastAttempt: now,
		})
	}
	if len(rep.Recipients) == 0 {
		return store.Event{Kind: "dsn", Detail: "none: NOTIFY excludes failures"}
	}
	if err := r.sendDSN(ctx, e, rep); err != nil {
		log.Error("bounce not delivered", "to", e.From, "err", err)
		return store.Event{Kind: "dsn", Detail: "failed: " + err.Error()}
	}
	return store.Event{Kind: "dsn", Detail: "sent to " + e.From}
}

// notifies applies RFC 3461 §4.1 to one kind of notice (FAILURE or
// DELAY): without NOTIFY, both are sent; NOTIFY=NEVER sends none.
func notifies(notify, kind string) bool {
	if notify == "" {
		return true
	}
	for _, n := range strings.Split(notify, ",") {
		if strings.EqualFold(strings.TrimSpace(n), kind) {
			return true
		}
	}
	return false
}

// dsnDomain is the domain a DSN about a message from sender comes from:
// the sender's own domain when it is ours (a user's mail, or the SRS
// address of a forward), so the DSN is DKIM-signed by that domain and
// passes DMARC at the receiver; our host name otherwise.
func (r *Relay) dsnDomain(ctx context.Context, sender string) string {
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return r.cfg.Hostname
	}
	domain := strings.ToLower(sender[at+1:])
	if _, err := r.deps.Store.GetDomain(ctx, domain); err != nil {
		return r.cfg.Hostname
	}
	return domain
}

func (r *Relay) sendDSN(ctx context.Context, e store.QueueEntry, rep dsn.Report) error {
	orig, err := r.deps.Store.OpenBlob(ctx, e.BlobID)
	if err != nil {
		return err
	}
	defer orig.Close()
	rep.FromDomain = r.dsnDomain(ctx, e.From)
	var buf bytes.Buffer
	if err := dsn.Write(&buf, rep, io.NewSectionReader(orig, 0, orig.Size()), orig.Size()); err != nil {
		return err
	}
	rc, err := r.deps.Deliver.Resolve(ctx, e.From)
	if errors.Is(err, deliver.ErrNotLocal) {
		rc, err = r.deps.Deliver.Remote(e.From)
	}
	if err != nil {
		return fmt.Errorf("sender %s: %w", e.From, err)
	}
	// The null sender: a DSN is never answered by another (RFC 3461 §6.2).
	return r.deps.Deliver.Deliver(ctx, &deliver.Message{From: "", Recipients: []deliver.Recipient{rc}, Body: &buf})
}
