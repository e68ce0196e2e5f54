package elector

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// recordedMetrics is a Metrics that remembers what the election reported.
type recordedMetrics struct {
	noMetrics
	mu sync.Mutex
	// leading holds every Leading call's argument, renewed every Renewed call's.
	leading []bool
	renewed []time.Time
	// appHealthy is the last verdict reported, true until one is.
	appHealthy bool
	// exits counts HandedOver calls by "cause/outcome".
	exits map[string]int
	// tookOver holds, per TookOver call, the previous Lease and the acquisition time.
	tookOver []takeOver
}

type takeOver struct {
	previous *coordinationv1.Lease
	acquired time.Time
}

func newRecordedMetrics() *recordedMetrics {
	return &recordedMetrics{appHealthy: true, exits: map[string]int{}}
}

func (r *recordedMetrics) Leading(is bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leading = append(r.leading, is)
}

func (r *recordedMetrics) Renewed(sent time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.renewed = append(r.renewed, sent)
}

func (r *recordedMetrics) AppHealthy(healthy bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.appHealthy = healthy
}

func (r *recordedMetrics) HandedOver(cause, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exits[cause+"/"+outcome]++
}

func (r *recordedMetrics) TookOver(previous *coordinationv1.Lease, acquired time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tookOver = append(r.tookOver, takeOver{previous: previous.DeepCopy(), acquired: acquired})
}

// The handover metric (pkg/electorhttp) is measured from the previous holder's last write: the machine must hand
// it the Lease as it was before this replica acquired it, and the time of the acquisition.
func TestHandoverIsMeasuredFromThePreviousHoldersLastWrite(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	metrics := newRecordedMetrics()
	m.metrics = metrics

	// Another replica released the Lease 250ms ago (by its clock): this acquisition ends a 250ms handover.
	released := heldBy("", 7, 2)
	released.Spec.RenewTime = ptr.To(metav1.NewMicroTime(epoch.Add(-250 * time.Millisecond)))
	m.observe(api.store(released), "")
	m.advance(context.Background())
	if holderOf(api.current()) != "me" {
		t.Fatal("the released Lease was not acquired")
	}
	if len(metrics.tookOver) != 1 {
		t.Fatalf("%d take-overs reported, want one", len(metrics.tookOver))
	}
	got := metrics.tookOver[0]
	if got.previous == nil || got.previous.Spec.RenewTime == nil || !got.previous.Spec.RenewTime.Equal(released.Spec.RenewTime) || !got.acquired.Equal(epoch) {
		t.Fatalf("take-over reported with previous %v at %s, want the released Lease (renewed %s) at %s",
			got.previous, got.acquired, released.Spec.RenewTime.Time, epoch)
	}

	// Renewing is no handover.
	clk.Step(testConfig("me").RetryPeriod)
	m.advance(context.Background())
	if n := len(metrics.tookOver); n != 1 {
		t.Errorf("after a renewal %d take-overs are reported, want still 1", n)
	}
}

// leader_election_master_status, _transitions_total and _last_renewal_timestamp_seconds follow what the machine
// reports: a change of leadership when it starts and stops leading, and the send time of every successful write.
func TestTheMachineReportsLeadershipAndRenewalsToTheMetrics(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	cfg := testConfig("me")
	m := newTestMachine(t, cfg, api, clk)
	metrics := newRecordedMetrics()
	m.metrics = metrics

	m.observe(api.store(heldBy("", 1, 2)), "")
	m.advance(context.Background())
	if !slices.Equal(metrics.leading, []bool{true}) || !slices.Equal(metrics.renewed, []time.Time{epoch}) {
		t.Fatalf("after acquiring: leading %v, renewed %v; want [true] and [%s]", metrics.leading, metrics.renewed, epoch)
	}
	clk.Step(cfg.RetryPeriod)
	m.advance(context.Background())
	if want := []time.Time{epoch, epoch.Add(cfg.RetryPeriod)}; !slices.Equal(metrics.leading, []bool{true}) || !slices.Equal(metrics.renewed, want) {
		t.Fatalf("after renewing: leading %v, renewed %v; want [true] and %v", metrics.leading, metrics.renewed, want)
	}
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(metrics.leading, []bool{true, false}) {
		t.Errorf("after releasing on shutdown: leading %v, want [true false]", metrics.leading)
	}
}
