package loadgen

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// POP3Opts configures the pop3 workload.
type POP3Opts struct {
	Dial  DialOpts
	Run   RunOpts
	Users []string
	Pass  string
	Keep  bool // RSET before QUIT so the mailboxes survive for another run
}

// RunPOP3 runs one session per user: USER/PASS, STAT, UIDL, RETR all,
// DELE all, QUIT. It reports RETR/s and bytes/s. Unless a duration or an
// operation count is set, every user is served exactly once.
func RunPOP3(o POP3Opts, out io.Writer) Result {
	if o.Run.Duration == 0 && o.Run.Ops == 0 {
		o.Run.Ops = int64(len(o.Users))
	}
	var user atomic.Uint64
	o.Run.Label = "RETR"
	res := Run(o.Run, func(ctx context.Context, id int, next func() bool, rec *Recorder, ctr *Counters) {
		for next() {
			u := o.Users[int(user.Add(1)-1)%len(o.Users)]
			t := time.Now()
			if err := pop3Session(ctx, o, u, rec, ctr); err != nil {
				rec.Err(reason(err))
				ctr.Err.Add(1)
				if _, ok := err.(*opError); ok {
					backoff(ctx)
				}
				continue
			}
			rec.Add("session", time.Since(t))
		}
	})
	retr := res.Rec.Count("RETR")
	fmt.Fprintf(out, "pop3 %s: %d clients, %d users, keep=%v\n", o.Dial.Addr, o.Run.Concurrency, len(o.Users), o.Keep)
	fmt.Fprintf(out, "sessions %d, RETR %d in %.2fs, errors %d\n", res.Rec.Count("session"), retr, res.Elapsed.Seconds(), res.Rec.Errors())
	fmt.Fprintf(out, "throughput: %.1f RETR/s (%.2f MB/s, %.1f sessions/s)\n", rate(retr, res.Elapsed),
		float64(res.Bytes)/res.Elapsed.Seconds()/1e6, rate(res.Rec.Count("session"), res.Elapsed))
	res.Rec.Report(out, "session", "connect", "login", "STAT", "UIDL", "RETR", "DELE", "QUIT")
	return res
}

func pop3Session(ctx context.Context, o POP3Opts, user string, rec *Recorder, ctr *Counters) error {
	t := time.Now()
	c, err := dialPOP3(ctx, o.Dial)
	if err != nil {
		return err
	}
	defer c.Close()
	rec.Add("connect", time.Since(t))
	t = time.Now()
	if err := c.login(user, o.Pass); err != nil {
		return err
	}
	rec.Add("login", time.Since(t))
	t = time.Now()
	text, err := c.cmd("STAT", "STAT")
	if err != nil {
		return err
	}
	count, _, err := parseStat(text)
	if err != nil {
		return &opError{Op: "read", Err: err}
	}
	rec.Add("STAT", time.Since(t))
	t = time.Now()
	if _, err := c.multi("UIDL", "UIDL"); err != nil {
		return err
	}
	rec.Add("UIDL", time.Since(t))
	for i := 1; i <= count; i++ {
		t = time.Now()
		n, err := c.multi("RETR", "RETR "+strconv.Itoa(i))
		if err != nil {
			return err
		}
		rec.Add("RETR", time.Since(t))
		rec.AddBytes(n)
		ctr.OK.Add(1)
		ctr.Bytes.Add(int64(n))
	}
	for i := 1; i <= count; i++ {
		t = time.Now()
		if _, err := c.cmd("DELE", "DELE "+strconv.Itoa(i)); err != nil {
			return err
		}
		rec.Add("DELE", time.Since(t))
	}
	if o.Keep {
		if _, err := c.cmd("RSET", "RSET"); err != nil {
			return err
		}
	}
	// QUIT commits the deletions (RFC 1939 §6, UPDATE state).
	t = time.Now()
	if _, err := c.cmd("QUIT", "QUIT"); err != nil {
		return err
	}
	rec.Add("QUIT", time.Since(t))
	return nil
}
