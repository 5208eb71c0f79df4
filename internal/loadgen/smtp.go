package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// SMTPOpts configures the smtp workload.
type SMTPOpts struct {
	Dial       DialOpts
	Run        RunOpts
	Size       int      // message size in bytes
	From       string   // envelope sender
	To         []string // recipients, one per message, taken in turn
	Persistent bool     // keep sessions open; otherwise one connection per message
	Auth       string   // "user:pass" for AUTH PLAIN, or empty
	Helo       string
}

// RunSMTP sends one message per transaction and reports delivered msg/s.
// Only a 250 after the final dot counts as delivered.
func RunSMTP(o SMTPOpts, out io.Writer) Result {
	body := dotStuff(makeMessage(o.Size, o.From, o.To[0], "ternload"))
	var rcpt atomic.Uint64
	o.Run.Label = "msg"
	res := Run(o.Run, func(ctx context.Context, id int, next func() bool, rec *Recorder, ctr *Counters) {
		var c *smtpClient
		var opened time.Time
		defer func() {
			if c != nil {
				c.quit()
			}
		}()
		fail := func(err error) {
			rec.Err(reason(err))
			ctr.Err.Add(1)
			var oe *opError
			if c != nil && errors.As(err, &oe) {
				c.Close() // transport broken: reconnect for the next message
				c = nil
			}
		}
		for next() {
			if c == nil {
				t := time.Now()
				var err error
				c, err = dialSMTP(ctx, o.Dial, o.Helo, o.Auth, false)
				if err != nil {
					fail(err)
					backoff(ctx)
					continue
				}
				rec.Add("connect", time.Since(t))
				opened = t
			}
			to := o.To[int(rcpt.Add(1)-1)%len(o.To)]
			t := time.Now()
			if err := c.sendMail(o.From, []string{to}, body); err != nil {
				fail(err)
				if c != nil {
					if _, err := c.cmd("RSET", 250, "RSET"); err != nil {
						c.Close()
						c = nil
					}
				}
			} else {
				rec.Add("msg", time.Since(t))
				ctr.OK.Add(1)
				ctr.Bytes.Add(int64(o.Size))
			}
			if !o.Persistent && c != nil {
				c.quit()
				rec.Add("session", time.Since(opened))
				c = nil
			}
		}
	})
	mode := "new connection per message"
	if o.Persistent {
		mode = "persistent sessions"
	}
	fmt.Fprintf(out, "smtp %s: %d clients, %s, %d-byte messages\n", o.Dial.Addr, o.Run.Concurrency, mode, o.Size)
	delivered := res.Rec.Count("msg")
	fmt.Fprintf(out, "delivered %d in %.2fs, errors %d\n", delivered, res.Elapsed.Seconds(), res.Rec.Errors())
	fmt.Fprintf(out, "throughput: %.1f msg/s (%.2f MB/s)\n", rate(delivered, res.Elapsed), float64(res.Bytes)/res.Elapsed.Seconds()/1e6)
	res.Rec.Report(out, "msg", "connect", "session")
	return res
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// backoff pauses briefly after a failed connection so that a dead server
// does not turn the tool into a busy loop.
func backoff(context.Context) {
	time.Sleep(50 * time.Millisecond)
}
