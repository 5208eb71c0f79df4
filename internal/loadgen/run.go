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

// RunOpts says how many workers run and when they stop.
type RunOpts struct {
	Concurrency int
	Ops         int64         // stop after this many operations in total (0: no limit)
	Duration    time.Duration // stop starting operations after this long (0: no limit)
	Progress    bool          // print the one-line progress display on Stderr
	Label       string        // what one operation is, for the progress line ("msg", "cycle")
	Stderr      io.Writer
}

// Worker runs operations until next reports false. It records latencies and
// errors in rec (owned by this worker) and bumps ctr for the progress line.
type Worker func(ctx context.Context, id int, next func() bool, rec *Recorder, ctr *Counters)

// Result is what a run measured.
type Result struct {
	Rec     *Recorder
	Elapsed time.Duration
	OK, Err int64
	Bytes   int64
}

// Run starts o.Concurrency workers and waits for them. next() hands out
// operation slots: it reports false once Ops slots were handed out, the
// duration is over, or SIGINT/SIGTERM arrived (the report is still printed).
// Operations in flight at the deadline finish and count; Elapsed runs until
// the last worker returns, so throughput is never overstated.
func Run(o RunOpts, w Worker) Result {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var issued atomic.Int64
	next := func() bool {
		if ctx.Err() != nil {
			return false
		}
		return o.Ops <= 0 || issued.Add(1) <= o.Ops
	}
	var ctr Counters
	var merged Merged
	start := time.Now()
	done := make(chan struct{})
	var pw sync.WaitGroup
	if o.Progress {
		pw.Go(func() { progress(o.Stderr, o.Label, start, &ctr, done) })
	}
	// Workers get a context that the deadline does not cancel: an operation
	// begun before the deadline (a dial, say) must finish and count, not
	// fail as a spurious timeout. next() alone ends the run.
	wctx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i := range o.Concurrency {
		wg.Go(func() {
			rec := NewRecorder()
			w(wctx, i, next, rec, &ctr)
			merged.Add(rec)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	pw.Wait()
	return Result{Rec: merged.Total(), Elapsed: elapsed, OK: ctr.OK.Load(), Err: ctr.Err.Load(), Bytes: ctr.Bytes.Load()}
}

// progress rewrites one stderr line about once a second until done closes,
// then clears it so the report starts on a clean line.
func progress(w io.Writer, label string, start time.Time, ctr *Counters, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastOK, lastBytes int64
	last := start
	for {
		select {
		case <-done:
			fmt.Fprint(w, "\r\x1b[K")
			return
		case now := <-t.C:
			ok, bytes := ctr.OK.Load(), ctr.Bytes.Load()
			dt := now.Sub(last).Seconds()
			line := fmt.Sprintf("[%4.0fs] %d %s ok, %d errors, %.0f %s/s now",
				now.Sub(start).Seconds(), ok, label, ctr.Err.Load(), float64(ok-lastOK)/dt, label)
			if bytes > 0 {
				line += fmt.Sprintf(", %.1f MB/s", float64(bytes-lastBytes)/dt/1e6)
			}
			fmt.Fprintf(w, "\r\x1b[K%s", line)
			lastOK, lastBytes, last = ok, bytes, now
		}
	}
}

// isTerminal reports whether f is a character device (a terminal), without
// pulling in a dependency for one ioctl.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
