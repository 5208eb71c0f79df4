package sqlite

import "time"

// checkpointInterval is how often the WAL is copied back into the
// database while writes happen. Longer means a page changed by many
// commits (a mailbox row, an index leaf) is written to the database once;
// shorter keeps the WAL and recovery time small. At the measured ~30 MB/s
// of WAL under load, a quarter second keeps the WAL to a few MB.
const checkpointInterval = 250 * time.Millisecond

// checkpointer runs PASSIVE checkpoints on its own connection. SQLite's
// automatic checkpoint would run inside the commit of whichever batch
// crosses the threshold, stalling every delivery in it; a PASSIVE
// checkpoint never blocks the writer nor readers.
func (s *Store) checkpointer() {
	defer close(s.ckptEnd)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	last := s.commits.Load()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		if n := s.commits.Load(); n == last {
			continue
		} else {
			last = n
		}
		if _, err := s.ckdb.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			s.log.Warn("checkpoint", "err", err)
		}
	}
}
