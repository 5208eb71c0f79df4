package daemon

import (
	"context"
	"time"
)

// Message bodies nobody refers to any more (every copy expunged, the queue
// done with them) are removed every gcInterval. Spool files younger than
// gcMinAge are kept: they may belong to a delivery still in progress.
const (
	gcInterval = 10 * time.Minute
	gcMinAge   = time.Hour
)

// startGC runs the store's garbage collection in the background until
// Shutdown.
func (d *Daemon) startGC() {
	ctx, cancel := context.WithCancel(context.Background())
	d.stopGC = cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(gcInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := d.st.CollectGarbage(ctx, gcMinAge)
			switch {
			case err != nil && ctx.Err() == nil:
				d.log.Error("garbage collection", "err", err)
			case n > 0:
				d.log.Info("garbage collection", "removed", n)
			}
		}
	}()
}
