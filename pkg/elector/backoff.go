package elector

import "time"

// backoff is a capped exponential backoff: initial, 2*initial, 4*initial, ... up to max. There is no jitter:
// an election group is a handful of replicas, too few to stampede the API server.
type backoff struct {
	initial, max time.Duration
}

// backoffFor paces retries of reads and standby writes: the first retry soon (a quarter retry period), later
// ones no further apart than one lease duration, so a replica rejoins within a lease of the API server's return.
func backoffFor(cfg Config) backoff {
	return backoff{initial: cfg.RetryPeriod / 4, max: cfg.LeaseDuration}
}

// delay is the pause after the given number of consecutive failures (1 for the first).
func (b backoff) delay(failures int) time.Duration {
	d := b.initial
	for i := 1; i < failures && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}
