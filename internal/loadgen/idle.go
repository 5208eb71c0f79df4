package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// IdleOpts configures imap-idle, pop3-idle and smtp-idle: open N
// connections, bring each to its idle state, hold them all for Hold.
type IdleOpts struct {
	Proto    string // "imap", "pop3" or "smtp"
	Dial     DialOpts
	N        int           // connections to hold
	Parallel int           // connections being opened at once
	Hold     time.Duration // how long to hold once all are open
	Users    []string
	Pass     string
	Progress bool
	Stderr   io.Writer
}

// RunIdle opens the connections, prints "ready: N connections established"
// on out when all attempts are done (so a script can measure the server's
// memory now), holds them for Hold or until SIGINT/SIGTERM, and closes them.
// It returns the number established.
func RunIdle(o IdleOpts, out io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		mu    sync.Mutex
		held  []io.Closer
		next  atomic.Int64
		done  atomic.Int64
		rec   = NewRecorder()
		wg    sync.WaitGroup
		start = time.Now()
	)
	stopProgress := make(chan struct{})
	var pw sync.WaitGroup
	if o.Progress {
		pw.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					fmt.Fprint(o.Stderr, "\r\x1b[K")
					return
				case <-t.C:
					fmt.Fprintf(o.Stderr, "\r\x1b[K[%4.0fs] %d/%d %s connections open", time.Since(start).Seconds(), done.Load(), o.N, o.Proto)
				}
			}
		})
	}
	for range o.Parallel {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(o.N) || ctx.Err() != nil {
					return
				}
				u := ""
				if len(o.Users) > 0 {
					u = o.Users[int(i)%len(o.Users)]
				}
				t := time.Now()
				c, err := openIdle(ctx, o, u)
				if err != nil {
					mu.Lock()
					rec.Err(reason(err))
					mu.Unlock()
					continue
				}
				mu.Lock()
				rec.Add("establish", time.Since(t))
				held = append(held, c)
				mu.Unlock()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	pw.Wait()
	n := len(held)
	fmt.Fprintf(out, "ready: %d %s connections established (%d failed) in %.2fs; holding for %s\n",
		n, o.Proto, rec.Errors(), time.Since(start).Seconds(), o.Hold)
	rec.Report(out, "establish")
	if f, ok := out.(*os.File); ok {
		f.Sync()
	}
	select {
	case <-ctx.Done():
	case <-time.After(o.Hold):
	}
	for _, c := range held {
		c.Close()
	}
	fmt.Fprintf(out, "closed %d connections\n", n)
	return n
}

// openIdle brings one connection to the idle state of its protocol:
// IMAP logged in, INBOX selected, in IDLE; POP3 logged in (TRANSACTION
// state); SMTP after EHLO.
func openIdle(ctx context.Context, o IdleOpts, user string) (io.Closer, error) {
	switch o.Proto {
	case "imap":
		c, err := dialIMAP(ctx, o.Dial)
		if err != nil {
			return nil, err
		}
		if err := c.login(user, o.Pass); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := c.do("SELECT", "INBOX", nil); err != nil {
			c.Close()
			return nil, err
		}
		tag := c.nextTag()
		if err := c.send(tag + " IDLE"); err != nil {
			c.Close()
			return nil, &opError{Op: "write", Err: err}
		}
		if err := c.waitContinue("IDLE", tag); err != nil {
			c.Close()
			return nil, err
		}
		c.nc.SetDeadline(time.Time{})
		return c, nil
	case "pop3":
		c, err := dialPOP3(ctx, o.Dial)
		if err != nil {
			return nil, err
		}
		if err := c.login(user, o.Pass); err != nil {
			c.Close()
			return nil, err
		}
		c.nc.SetDeadline(time.Time{})
		return c, nil
	case "smtp":
		c, err := dialSMTP(ctx, o.Dial, "ternload.test", "", false)
		if err != nil {
			return nil, err
		}
		c.nc.SetDeadline(time.Time{})
		return c, nil
	}
	return nil, fmt.Errorf("unknown protocol %q", o.Proto)
}
