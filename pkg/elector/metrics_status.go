package elector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// statusCollector exports, at scrape time, what the alerts need beside the counters: the fencing token this
// replica last saw and the lease duration it runs with. Read from the board, so the election loop does nothing
// for them.
type statusCollector struct {
	board         *board
	leaseDuration float64
	transitions   *prometheus.Desc
	duration      *prometheus.Desc
}

func newStatusCollector(b *board, cfg Config) *statusCollector {
	name := prometheus.Labels{"name": cfg.LeaseName}
	return &statusCollector{
		board:         b,
		leaseDuration: cfg.LeaseDuration.Seconds(),
		transitions: prometheus.NewDesc("leader_election_lease_transitions",
			"The Lease's leaseTransitions (the fencing token) as this replica last saw it; it rises by one per change of leader.",
			nil, name),
		duration: prometheus.NewDesc("leader_election_lease_duration_seconds",
			"The lease duration this replica runs with: how long its group may go without a renewal before another replica takes over.",
			nil, name),
	}
}

// Describe implements prometheus.Collector.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.transitions
	ch <- c.duration
}

// Collect implements prometheus.Collector. The token is absent until the Lease (or its absence) has been seen.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.duration, prometheus.GaugeValue, c.leaseDuration)
	if s := c.board.current(); s.Known {
		ch <- prometheus.MustNewConstMetric(c.transitions, prometheus.GaugeValue, float64(s.Transitions))
	}
}
