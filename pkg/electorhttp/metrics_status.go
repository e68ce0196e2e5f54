package electorhttp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leader-election/leader-election/pkg/elector"
)

// statusCollector exports, at scrape time, what the alerts need beside the counters: the fencing token this
// replica last saw and the lease duration it runs with. Read from the elector's last published snapshot, so the
// election loop does nothing for them.
type statusCollector struct {
	snapshot      func() elector.Snapshot
	leaseDuration float64
	transitions   *prometheus.Desc
	duration      *prometheus.Desc
}

// NewStatusCollector exports e's fencing token and lease duration; register it beside NewMetrics' metrics.
func NewStatusCollector(e Elector) prometheus.Collector {
	return newStatusCollector(e.Snapshot, e.Config())
}

func newStatusCollector(snapshot func() elector.Snapshot, cfg elector.Config) *statusCollector {
	name := prometheus.Labels{"name": cfg.LeaseName}
	return &statusCollector{
		snapshot:      snapshot,
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
	if s := c.snapshot(); s.Known {
		ch <- prometheus.MustNewConstMetric(c.transitions, prometheus.GaugeValue, float64(s.Transitions))
	}
}
