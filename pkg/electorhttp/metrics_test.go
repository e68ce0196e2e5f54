package electorhttp

import (
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/elector"
)

// The alerts in the chart (docs/observability.md) compare the time since the last renewal with the lease
// duration and count changes of leader by the fencing token: both must be on /metrics, the token only once known.
func TestStatusMetricsCarryTheTokenAndTheLeaseDuration(t *testing.T) {
	e := newFakeElector(testConfig())
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	reg.MustRegister(NewStatusCollector(e))
	want := map[string]float64{"leader_election_lease_duration_seconds": cfg.LeaseDuration.Seconds()}
	if got := gauges(t, reg); !maps.Equal(got, want) {
		t.Errorf("before the Lease is known: %v, want %v", got, want)
	}
	e.set(elector.Snapshot{Known: true, Holder: "other", Transitions: 41}, elector.Status{})
	want["leader_election_lease_transitions"] = 41
	if got := gauges(t, reg); !maps.Equal(got, want) {
		t.Errorf("once the Lease is known: %v, want %v", got, want)
	}
}

// gauges returns each gauge on reg by name, checking that each carries the label name="demo".
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "name" || m.GetLabel()[0].GetValue() != "demo" {
				t.Errorf("%s has labels %v, want name=\"demo\"", f.GetName(), m.GetLabel())
			}
			out[f.GetName()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// pkg/elector's TestHandoverIsMeasuredFromThePreviousHoldersLastWrite checks what the machine reports; this is
// what the histogram makes of it.
func TestHandoverIsMeasuredFromThePreviousHoldersLastWrite(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg, "demo")
	if err != nil {
		t.Fatal(err)
	}

	// Another replica released the Lease 250ms ago (by its clock): this acquisition ends a 250ms handover.
	released := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{
		RenewTime: ptr.To(metav1.NewMicroTime(epoch.Add(-250 * time.Millisecond))),
	}}
	metrics.TookOver(released, epoch)
	count, sum := handoverOf(t, reg)
	if count != 1 || sum < 0.2499 || sum > 0.2501 {
		t.Fatalf("handover histogram: count %d sum %gs, want one handover of 0.25s", count, sum)
	}

	// A Lease that nobody held before (absent, or never renewed) is no handover.
	metrics.TookOver(nil, epoch)
	metrics.TookOver(&coordinationv1.Lease{}, epoch)
	if count, _ := handoverOf(t, reg); count != 1 {
		t.Errorf("after taking Leases nobody renewed the handover count is %d, want still 1", count)
	}
}

func handoverOf(t *testing.T, reg *prometheus.Registry) (count uint64, sum float64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "leader_election_handover_seconds" {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("no leader_election_handover_seconds on the registry")
	return 0, 0
}
