package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// IMAPOpts configures the imap workload.
type IMAPOpts struct {
	Dial    DialOpts
	Run     RunOpts
	Users   []string
	Pass    string
	Idle    time.Duration // how long each cycle stays in IDLE (0: skip IDLE)
	AppendN int           // size of the APPENDed message
}

// imapOps is the report order: one row per command of the cycle.
var imapOps = []string{"cycle", "connect", "LOGIN", "SELECT", "FETCH-env", "FETCH-body",
	"STORE-seen", "SEARCH", "APPEND", "STORE-del", "EXPUNGE", "IDLE", "LOGOUT"}

// RunIMAP runs the realistic session mix as one "cycle" per user session:
// LOGIN, SELECT INBOX, FETCH the last 50 (ENVELOPE FLAGS), FETCH one
// BODY.PEEK[], STORE \Seen on three, SEARCH UNSEEN, APPEND 4 KB, delete
// and expunge that message, a short IDLE, LOGOUT.
func RunIMAP(o IMAPOpts, out io.Writer) Result {
	var user atomic.Uint64
	o.Run.Label = "cycles"
	res := Run(o.Run, func(ctx context.Context, id int, next func() bool, rec *Recorder, ctr *Counters) {
		rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
		for next() {
			u := o.Users[int(user.Add(1)-1)%len(o.Users)]
			msg := makeMessage(o.AppendN, u, u, fmt.Sprintf("append-%d-%d", id, rng.Uint64()))
			t := time.Now()
			n, err := imapCycle(ctx, o, u, msg, rng, rec)
			ctr.Bytes.Add(int64(n))
			if err != nil {
				rec.Err(reason(err))
				ctr.Err.Add(1)
				if _, ok := err.(*opError); ok {
					backoff(ctx)
				}
				continue
			}
			rec.Add("cycle", time.Since(t))
			ctr.OK.Add(1)
		}
	})
	fmt.Fprintf(out, "imap %s: %d clients, %d users, IDLE %s per cycle\n", o.Dial.Addr, o.Run.Concurrency, len(o.Users), o.Idle)
	cycles := res.Rec.Count("cycle")
	fmt.Fprintf(out, "cycles %d in %.2fs, errors %d, fetched %.2f MB\n", cycles, res.Elapsed.Seconds(), res.Rec.Errors(), float64(res.Bytes)/1e6)
	fmt.Fprintf(out, "throughput: %.1f cycles/s\n", rate(cycles, res.Elapsed))
	if o.Idle > 0 {
		fmt.Fprintf(out, "note: the IDLE wait caps throughput at %.0f cycles/s with %d clients\n",
			float64(o.Run.Concurrency)/o.Idle.Seconds(), o.Run.Concurrency)
	}
	res.Rec.Report(out, imapOps...)
	return res
}

// imapCycle runs one session for user and returns the literal bytes
// fetched. Each step is timed on its own.
func imapCycle(ctx context.Context, o IMAPOpts, user string, msg []byte, rng *rand.Rand, rec *Recorder) (int, error) {
	fetched := 0
	step := func(op string, f func() error) error {
		t := time.Now()
		if err := f(); err != nil {
			return err
		}
		rec.Add(op, time.Since(t))
		return nil
	}
	var c *imapClient
	if err := step("connect", func() (err error) { c, err = dialIMAP(ctx, o.Dial); return err }); err != nil {
		return 0, err
	}
	defer c.Close()
	if err := step("LOGIN", func() error { return c.login(user, o.Pass) }); err != nil {
		return 0, err
	}
	if err := step("SELECT", func() error { _, err := c.do("SELECT", "INBOX", nil); return err }); err != nil {
		return 0, err
	}
	if n := c.exists; n > 0 {
		lo := max(1, n-49)
		if err := step("FETCH-env", func() error {
			_, err := c.do("FETCH", fmt.Sprintf("%d:%d (ENVELOPE FLAGS)", lo, n), func([]byte) { fetched += c.lit })
			return err
		}); err != nil {
			return fetched, err
		}
		if err := step("FETCH-body", func() error {
			_, err := c.do("FETCH", strconv.Itoa(lo+rng.IntN(n-lo+1))+" BODY.PEEK[]", func([]byte) { fetched += c.lit })
			return err
		}); err != nil {
			return fetched, err
		}
		set := make([]string, 3)
		for i := range set {
			set[i] = strconv.Itoa(lo + rng.IntN(n-lo+1))
		}
		if err := step("STORE-seen", func() error {
			_, err := c.do("STORE", strings.Join(set, ",")+` +FLAGS (\Seen)`, nil)
			return err
		}); err != nil {
			return fetched, err
		}
	}
	if err := step("SEARCH", func() error { _, err := c.do("SEARCH", "UNSEEN", nil); return err }); err != nil {
		return fetched, err
	}
	var uid uint32
	if err := step("APPEND", func() (err error) { uid, err = c.appendMsg("INBOX", msg); return err }); err != nil {
		return fetched, err
	}
	if err := c.deleteAppended(uid, step); err != nil {
		return fetched, err
	}
	if o.Idle > 0 {
		d, err := c.idle(o.Idle)
		if err != nil {
			return fetched, err
		}
		rec.Add("IDLE", d)
	}
	err := step("LOGOUT", func() error { _, err := c.do("LOGOUT", "", nil); return err })
	return fetched, err
}

// deleteAppended marks the message just appended \Deleted and expunges it:
// by UID with UID EXPUNGE when the server has UIDPLUS (RFC 4315), else by
// its sequence number (the last one) with EXPUNGE.
func (c *imapClient) deleteAppended(uid uint32, step func(string, func() error) error) error {
	if uid != 0 {
		if err := step("STORE-del", func() error {
			_, err := c.do("UID STORE", fmt.Sprintf(`%d +FLAGS.SILENT (\Deleted)`, uid), nil)
			return err
		}); err != nil {
			return err
		}
		if c.caps["UIDPLUS"] || c.caps["IMAP4REV2"] {
			return step("EXPUNGE", func() error { _, err := c.do("UID EXPUNGE", strconv.Itoa(int(uid)), nil); return err })
		}
		return step("EXPUNGE", func() error { _, err := c.do("EXPUNGE", "", nil); return err })
	}
	// No APPENDUID: a NOOP makes the server report the new EXISTS.
	if _, err := c.do("NOOP", "", nil); err != nil {
		return err
	}
	if err := step("STORE-del", func() error {
		_, err := c.do("STORE", fmt.Sprintf(`%d +FLAGS.SILENT (\Deleted)`, c.exists), nil)
		return err
	}); err != nil {
		return err
	}
	return step("EXPUNGE", func() error { _, err := c.do("EXPUNGE", "", nil); return err })
}
