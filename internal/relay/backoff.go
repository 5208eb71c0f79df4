package relay

import (
	"math/rand/v2"
	"time"
)

// schedule is the retry schedule in units of Config.BaseDelay (normally
// a minute): 1m, 5m, 15m, 30m, 1h, 2h, then every 4h until the lifetime
// ends.
var schedule = []time.Duration{1, 5, 15, 30, 60, 120, 240}

// nextDelay is the wait after the attempt numbered attempt (1 for the
// first), plus up to 20% jitter so entries deferred together do not all
// come back in the same instant.
func nextDelay(base time.Duration, attempt int) time.Duration {
	i := min(max(attempt-1, 0), len(schedule)-1)
	d := base * schedule[i]
	return d + rand.N(d/5+1)
}
