package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/store"
)

const queueUsage = "Usage:\n  tern queue list [--config FILE]\n  tern queue show [--config FILE] ID\n  tern queue retry [--config FILE] ID\n  tern queue remove [--config FILE] ID\n  tern queue flush [--config FILE]\n"

// cmdQueue inspects and steers the outbound queue. It works beside a
// running tern serve: the relay picks up retried entries within a second.
func cmdQueue(e *env, args []string) error {
	sub, rest, err := splitSub(args, "list", "show", "retry", "remove", "flush")
	if err != nil {
		fmt.Fprint(e.stderr, queueUsage)
		return err
	}
	ctx := context.Background()
	switch sub {
	case "list":
		fs, path := flags(e, "queue list", "[--config FILE]", "List the messages waiting for relay, soonest attempt first.")
		if err := parseN(fs, rest, 0); err != nil {
			return err
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			q, err := st.ListQueue(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFROM\tTO\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR")
			for _, q := range q {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", q.ID, orNull(q.From), rcptList(q.Recipients),
					q.Attempts, q.NextAttempt.Local().Format(time.DateTime), orDash(clip(q.LastError, 60)))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%d queued\n", len(q))
			return nil
		})
	case "show":
		fs, path := flags(e, "queue show", "[--config FILE] ID", "Show a queued message and its journey (every attempt, reply and outcome),\nalso after it left the queue.")
		id, err := parseID(fs, rest)
		if err != nil {
			return err
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			return showQueueEntry(ctx, e, st, id)
		})
	case "retry", "remove":
		help := map[string]string{"retry": "Try to deliver a queued message now.", "remove": "Drop a queued message: it will not be delivered, and no bounce is sent."}
		fs, path := flags(e, "queue "+sub, "[--config FILE] ID", help[sub])
		id, err := parseID(fs, rest)
		if err != nil {
			return err
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			if sub == "retry" {
				err = st.RetryQueueEntry(ctx, id, time.Now())
			} else {
				err = st.RemoveQueueEntry(ctx, id)
				if err == nil {
					err = st.AddEvent(ctx, store.Event{QueueID: id, Kind: "removed", Detail: "by tern queue remove"})
				}
			}
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no queue entry %d", id)
			}
			if err == nil {
				fmt.Fprintf(e.stdout, "queue entry %d: %s\n", id, map[string]string{"retry": "due now", "remove": "removed"}[sub])
			}
			return err
		})
	default: // flush
		fs, path := flags(e, "queue flush", "[--config FILE]", "Make every queued message due now.")
		if err := parseN(fs, rest, 0); err != nil {
			return err
		}
		return withManager(*path, func(_ *accounts.Manager, st store.Store) error {
			q, err := st.ListQueue(ctx)
			if err != nil {
				return err
			}
			now := time.Now()
			n := 0
			for _, q := range q {
				err := st.RetryQueueEntry(ctx, q.ID, now)
				if errors.Is(err, store.ErrNotFound) {
					continue // delivered meanwhile
				}
				if err != nil {
					return err
				}
				n++
			}
			fmt.Fprintf(e.stdout, "%d queue entries due now\n", n)
			return nil
		})
	}
}

func showQueueEntry(ctx context.Context, e *env, st store.Store, id int64) error {
	q, _, err := st.GetQueueEntry(ctx, id)
	queued := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	evs, err := st.QueueEvents(ctx, id)
	if err != nil {
		return err
	}
	if !queued && len(evs) == 0 {
		return fmt.Errorf("no queue entry %d", id)
	}
	w := e.stdout
	if queued {
		fmt.Fprintf(w, "ID:           %d\n", q.ID)
		fmt.Fprintf(w, "From:         %s\n", orNull(q.From))
		fmt.Fprintf(w, "Domain:       %s\n", q.Domain)
		for _, r := range q.Recipients {
			fmt.Fprintf(w, "To:           %s\n", r.Address)
		}
		fmt.Fprintf(w, "Body:         %s\n", q.BlobID)
		fmt.Fprintf(w, "Queued:       %s\n", q.Created.Local().Format(time.DateTime))
		fmt.Fprintf(w, "Attempts:     %d\n", q.Attempts)
		fmt.Fprintf(w, "Next attempt: %s\n", q.NextAttempt.Local().Format(time.DateTime))
		if q.LastError != "" {
			fmt.Fprintf(w, "Last error:   %s\n", q.LastError)
		}
		if q.LeaseOwner != "" && q.LeaseUntil.After(time.Now()) {
			fmt.Fprintf(w, "Being tried:  by %s\n", q.LeaseOwner)
		}
	} else {
		fmt.Fprintf(w, "ID:           %d (no longer queued)\n", id)
	}
	fmt.Fprintln(w, "\nJourney:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ev := range evs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.Kind, ev.Detail)
	}
	return tw.Flush()
}

func parseID(fs interface {
	Parse([]string) error
	NArg() int
	Arg(int) string
}, args []string) (int64, error) {
	if err := parseN(fs, args, 1); err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("%q is not a queue entry ID", fs.Arg(0))
	}
	return id, nil
}

func rcptList(rs []store.QueueRecipient) string {
	var b []string
	for _, r := range rs {
		b = append(b, r.Address)
	}
	return clip(strings.Join(b, ","), 60)
}

func orNull(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
