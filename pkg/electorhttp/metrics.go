package electorhttp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/leader-election/leader-election/pkg/elector"
)

// Metrics are the elector's Prometheus metrics; they implement elector.Metrics (pass them in elector.Options).
type Metrics struct {
	isLeader    prometheus.Gauge
	transitions prometheus.Counter
	lastRenewal prometheus.Gauge
	apiErrors   *prometheus.CounterVec
	handover    prometheus.Histogram
	appHealth   prometheus.Gauge
	leavings    *prometheus.CounterVec
}

// NewMetrics registers the election metrics, plus the Go runtime and process collectors, on reg.
func NewMetrics(reg prometheus.Registerer, leaseName string) (*Metrics, error) {
	name := prometheus.Labels{"name": leaseName}
	m := &Metrics{
		// Same name and shape as client-go's, so existing dashboards and alerts apply.
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leader_election_master_status", ConstLabels: name,
			Help: "1 while this replica holds the Lease, 0 otherwise.",
		}),
		transitions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leader_election_transitions_total", ConstLabels: name,
			Help: "Times this replica became the leader or stopped being it.",
		}),
		lastRenewal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leader_election_last_renewal_timestamp_seconds", ConstLabels: name,
			Help: "When this replica sent its last successful acquisition or renewal (Unix time).",
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leader_election_api_errors_total",
			Help: "Failed API requests by resource, verb and reason (Conflict is a lost race, not a fault).",
		}, []string{"resource", "verb", "reason"}),
		handover: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leader_election_handover_seconds", ConstLabels: name,
			Help: "When this replica took the Lease over from another holder: the time since that holder's last write " +
				"to the Lease (its last renewal, or its release), by the two replicas' clocks.",
			// From a graceful handover (milliseconds) to a crashed leader's full lease duration (at most 300s).
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 20, 30, 60, 120, 300},
		}),
		appHealth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leader_election_app_healthy", ConstLabels: name,
			Help: "1 while this replica's application passes its checks (always 1 when leadership is not health-gated).",
		}),
		leavings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leader_election_leader_exits_total", ConstLabels: name,
			Help: "Times this replica left the leadership on purpose, by cause (stepdown, unhealthy, shutdown) and outcome " +
				"(handed_over: written over to a successor; released: released to a race, no healthy successor known or the handover failed).",
		}, []string{"cause", "outcome"}),
	}
	m.appHealth.Set(1)
	for _, c := range []prometheus.Collector{
		m.isLeader, m.transitions, m.lastRenewal, m.apiErrors, m.handover, m.appHealth, m.leavings,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Leading records a change of this replica's leadership.
func (m *Metrics) Leading(is bool) {
	if is {
		m.isLeader.Set(1)
	} else {
		m.isLeader.Set(0)
	}
	m.transitions.Inc()
}

// Renewed records a successful acquisition or renewal, sent at the given time.
func (m *Metrics) Renewed(sent time.Time) {
	m.lastRenewal.Set(float64(sent.UnixNano()) / 1e9)
}

// TookOver records an acquisition at acquired of a Lease whose previous state was previous (held by another
// replica, or released by one). The clocks of two machines are compared here, which the election itself never
// does: a skew between them shows in this metric only, and a negative difference counts as zero.
func (m *Metrics) TookOver(previous *coordinationv1.Lease, acquired time.Time) {
	if previous == nil || previous.Spec.RenewTime == nil {
		return
	}
	m.handover.Observe(max(acquired.Sub(previous.Spec.RenewTime.Time), 0).Seconds())
}

// AppHealthy records the application's verdict.
func (m *Metrics) AppHealthy(healthy bool) {
	if healthy {
		m.appHealth.Set(1)
	} else {
		m.appHealth.Set(0)
	}
}

// HandedOver counts a deliberate exit from leadership.
func (m *Metrics) HandedOver(cause, outcome string) {
	m.leavings.WithLabelValues(cause, outcome).Inc()
}

// APIError counts a failed request.
func (m *Metrics) APIError(resource, verb string, err error) {
	if err != nil {
		m.apiErrors.WithLabelValues(resource, verb, elector.ReasonOf(err)).Inc()
	}
}
