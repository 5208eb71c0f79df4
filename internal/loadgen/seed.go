package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// SeedOpts configures seed: deliver Count messages from an mbox to every
// user, over SMTP or LMTP.
type SeedOpts struct {
	Dial     DialOpts
	LMTP     bool
	Users    []string
	Count    int    // messages per user
	Mbox     string // path of the mbox file (gen_mbox.py output)
	From     string
	Batch    int // recipients per transaction
	Parallel int
	Stderr   io.Writer
	Progress bool
}

// ReadMbox splits an mbox file into messages: each starts after a
// "From " separator line; ">From " lines are unescaped (mboxrd, one level).
func ReadMbox(data []byte) [][]byte {
	var msgs [][]byte
	var cur []byte
	flush := func() {
		if cur != nil {
			// The blank line before the next separator belongs to the mbox.
			if bytes.HasSuffix(cur, []byte("\n\n")) {
				cur = cur[:len(cur)-1]
			}
			msgs = append(msgs, cur)
		}
	}
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("From ")):
			flush()
			cur = []byte{}
		case cur == nil:
			// text before the first separator: not a message
		case bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) && line[0] == '>':
			cur = append(cur, line[1:]...)
		default:
			cur = append(cur, line...)
		}
	}
	flush()
	return msgs
}

// RunSeed delivers message i%len(mbox) for i in [0, Count) to all users,
// Batch recipients per transaction.
func RunSeed(o SeedOpts, out io.Writer) error {
	data, err := os.ReadFile(o.Mbox)
	if err != nil {
		return err
	}
	msgs := ReadMbox(data)
	if len(msgs) == 0 {
		return fmt.Errorf("%s: no messages", o.Mbox)
	}
	stuffed := make([][]byte, len(msgs))
	for i, m := range msgs {
		stuffed[i] = dotStuff(m)
	}
	type job struct {
		msg []byte
		to  []string
	}
	jobs := make(chan job)
	var sent, failed atomic.Int64
	var mu sync.Mutex
	errs := NewRecorder()
	start := time.Now()
	var wg sync.WaitGroup
	ctx := context.Background()
	for range o.Parallel {
		wg.Go(func() {
			var c *smtpClient
			defer func() {
				if c != nil {
					c.quit()
				}
			}()
			for j := range jobs {
				var err error
				if c == nil {
					c, err = dialSMTP(ctx, o.Dial, "ternload.test", "", o.LMTP)
				}
				if err == nil {
					err = c.sendMail(o.From, j.to, j.msg)
				}
				if err != nil {
					failed.Add(int64(len(j.to)))
					mu.Lock()
					errs.Err(reason(err))
					mu.Unlock()
					if c != nil {
						c.Close()
						c = nil
					}
					continue
				}
				sent.Add(int64(len(j.to)))
			}
		})
	}
	total := int64(o.Count * len(o.Users))
	lastPrint := time.Now()
	for i := range o.Count {
		for b := 0; b < len(o.Users); b += o.Batch {
			jobs <- job{msg: stuffed[i%len(stuffed)], to: o.Users[b:min(b+o.Batch, len(o.Users))]}
			if o.Progress && time.Since(lastPrint) > time.Second {
				fmt.Fprintf(o.Stderr, "\r\x1b[Kseeded %d/%d", sent.Load()+failed.Load(), total)
				lastPrint = time.Now()
			}
		}
	}
	close(jobs)
	wg.Wait()
	if o.Progress {
		fmt.Fprint(o.Stderr, "\r\x1b[K")
	}
	fmt.Fprintf(out, "seeded %d deliveries (%d users x %d messages) in %.1fs, %d failed\n",
		sent.Load(), len(o.Users), o.Count, time.Since(start).Seconds(), failed.Load())
	if errs.Errors() > 0 {
		errs.Report(out)
		return fmt.Errorf("%d deliveries failed", failed.Load())
	}
	return nil
}
