package elector

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
	testclock "k8s.io/utils/clock/testing"
)

// fakeCandidates is an in-memory API server for candidate Leases.
type fakeCandidates struct {
	mu       sync.Mutex
	rv       int
	byName   map[string]*coordinationv1.Lease
	writes   int
	watches  int
	watchers []*watch.RaceFreeFakeWatcher
}

func newFakeCandidates() *fakeCandidates {
	return &fakeCandidates{rv: 1000, byName: map[string]*coordinationv1.Lease{}}
}

func (f *fakeCandidates) put(l *coordinationv1.Lease, added bool) *coordinationv1.Lease {
	f.rv++
	l = l.DeepCopy()
	l.ResourceVersion = strconv.Itoa(f.rv)
	f.byName[l.Name] = l
	for _, w := range f.watchers {
		if added {
			w.Add(l.DeepCopy())
		} else {
			w.Modify(l.DeepCopy())
		}
	}
	return l.DeepCopy()
}

func (f *fakeCandidates) Create(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if _, ok := f.byName[l.Name]; ok {
		return nil, apierrors.NewAlreadyExists(leaseResource, l.Name)
	}
	return f.put(l, true), nil
}

func (f *fakeCandidates) Update(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	cur, ok := f.byName[l.Name]
	switch {
	case !ok:
		return nil, apierrors.NewNotFound(leaseResource, l.Name)
	case cur.ResourceVersion != l.ResourceVersion:
		return nil, apierrors.NewConflict(leaseResource, l.Name, nil)
	}
	return f.put(l, false), nil
}

func (f *fakeCandidates) Get(_ context.Context, name string) (*coordinationv1.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.byName[name]; ok {
		return l.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(leaseResource, name)
}

func (f *fakeCandidates) Watch(context.Context, string) (watch.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watches++
	w := watch.NewRaceFreeFake()
	for _, l := range f.byName {
		w.Add(l.DeepCopy())
	}
	f.watchers = append(f.watchers, w)
	return w, nil
}

// advertised is the candidate Lease of pod name, nil when absent.
func (f *fakeCandidates) advertised(name string) *coordinationv1.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.byName[CandidateLeaseName("demo", name)]; ok {
		return l.DeepCopy()
	}
	return nil
}

// watchesStopped reports whether every candidate watch has been stopped.
func (f *fakeCandidates) watchesStopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers {
		if !w.IsStopped() {
			return false
		}
	}
	return true
}

func (f *fakeCandidates) counts() (writes, watches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.watches
}

// startGated runs an elector with an AppHealth and candidate Leases until the test ends.
func startGated(t *testing.T, cfg Config, api LeaseAPI, cands *fakeCandidates, health *fakeHealth, clk *testclock.FakeClock) (*Elector, *fakeEvents) {
	t.Helper()
	events := &fakeEvents{}
	e, err := New(cfg, api, events, Options{Clock: clk, AppHealth: health, Candidates: cands, Metrics: newRecordedMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return e, events
}

func TestRunAnUnhealthyStandbyNeverTakesTheLeaseAndTakesItAtOnceWhenHealthy(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("", 3, 2))
	clk := testclock.NewFakeClock(epoch)
	health := &fakeHealth{}
	health.set(false, "not checked yet")
	cands := newFakeCandidates()
	e, _ := startGated(t, testConfig("me"), api, cands, health, clk)
	waitFor(t, "the elector to see the free Lease and advertise itself unhealthy", func() bool {
		l := cands.advertised("me")
		return e.board.watch().synced && l != nil && l.Annotations[CandidateHealthyAnnotation] == "false"
	})
	for range 20 {
		clk.Step(500 * time.Millisecond)
		waitFor(t, "the loop to catch up with the clock", func() bool { return !e.board.lastBeat().Before(clk.Now()) })
	}
	if n := api.count("update") + api.count("create"); n != 0 || e.Status().IsLeader {
		t.Fatalf("an unhealthy standby wrote the Lease %d times (leader: %v)", n, e.Status().IsLeader)
	}
	st := e.Status()
	if st.App.Healthy || st.App.Reason != "not checked yet" || st.App.Since == "" {
		t.Errorf("GET / app = %+v, want unhealthy with the reason and since", st.App)
	}
	if ok, why := e.Ready(); ok {
		t.Errorf("ready (%s) while unhealthy", why)
	}

	health.set(true, "")
	// The fake clock stands still: only Changed() can make the elector act.
	waitFor(t, "the healthy elector to acquire the free Lease", func() bool { return e.Status().IsLeader })
	if st := e.Status(); !st.App.Healthy || st.App.Reason != "" {
		t.Errorf("GET / app = %+v after recovery", st.App)
	}
	waitFor(t, "the advertisement to say healthy", func() bool {
		l := cands.advertised("me")
		return l != nil && l.Annotations[CandidateHealthyAnnotation] == "true"
	})
	owner := cands.advertised("me").OwnerReferences
	if len(owner) != 1 || owner[0].Kind != "Pod" || owner[0].Name != "me" || string(owner[0].UID) != "me-uid" || owner[0].BlockOwnerDeletion != nil {
		t.Errorf("candidate Lease owner references %+v, want this pod alone, not blocking its deletion", owner)
	}
}

// gatedLeader is a health-gated elector with handover and its fakes.
type gatedLeader struct {
	e      *Elector
	events *fakeEvents
	api    *fakeLeases
	cands  *fakeCandidates
	health *fakeHealth
	clk    *testclock.FakeClock
	cfg    Config
}

// gatedLeaderWithSuccessor runs a healthy, health-gated elector with handover until it leads, then advertises a
// healthy candidate "succ" for it to hand over to.
func gatedLeaderWithSuccessor(t *testing.T) gatedLeader {
	t.Helper()
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	health := &fakeHealth{}
	health.set(true, "")
	cands := newFakeCandidates()
	cfg := testConfig("me")
	cfg.Handover = true
	e, events := startGated(t, cfg, api, cands, health, clk)
	waitLeading(t, e, clk)
	waitFor(t, "the leader's candidate watch", func() bool { _, w := cands.counts(); return w == 1 })
	succ := candidateLease(testConfig("succ"), candidate{Name: "succ", UID: "succ-uid", Healthy: true, Started: epoch}, epoch)
	if _, err := cands.Create(context.Background(), succ); err != nil {
		t.Fatal(err)
	}
	return gatedLeader{e: e, events: events, api: api, cands: cands, health: health, clk: clk, cfg: cfg}
}

func TestRunALeaderTurningUnhealthyHandsOverToTheHealthyCandidateItWatches(t *testing.T) {
	g := gatedLeaderWithSuccessor(t)
	e, events, api, cands, health, clk, cfg := g.e, g.events, g.api, g.cands, g.health, g.clk, g.cfg
	metrics := e.metrics.(*recordedMetrics)
	token := transitionsOf(api.current())

	health.set(false, "HTTP 503 from :8080/ready")
	// It first leaves the Service: unready at once, still the leader, still renewing, for ServiceLeaveTime.
	waitFor(t, "the leader to turn unready", func() bool { ok, _ := e.Ready(); return !ok })
	left := clk.Now()
	renewals := api.count("update")
	for clk.Since(left) < ServiceLeaveTime {
		if st := e.Status(); !st.IsLeader || holderOf(api.current()) != "me" {
			t.Fatalf("%s after leaving the Service: isLeader %v, holder %q; want the Lease kept until %s have passed",
				clk.Since(left), st.IsLeader, holderOf(api.current()), ServiceLeaveTime)
		}
		if ok, why := e.Ready(); ok || !strings.Contains(why, "leaving the Service") {
			t.Fatalf("%s after leaving the Service: ready %v (%s)", clk.Since(left), ok, why)
		}
		clk.Step(cfg.RetryPeriod) // the loop wakes at least once per retry period
		waitFor(t, "the loop to catch up with the clock", func() bool { return !e.board.lastBeat().Before(clk.Now()) })
	}
	if n := api.count("update") - renewals; n < int(ServiceLeaveTime/cfg.RetryPeriod)-1 {
		t.Errorf("%d Lease writes while out of the Service for %s: the leader must keep renewing", n, ServiceLeaveTime)
	}
	waitFor(t, "the handover", func() bool { return holderOf(api.current()) == "succ" })
	got := api.current()
	if handoverFromOf(got) != "me" || holderUIDOfTest(got) != "succ-uid" || transitionsOf(got) != token+1 {
		t.Fatalf("handed-over Lease: handover-from %q, holder-uid %q, token %d (want me, succ-uid, %d)", handoverFromOf(got), holderUIDOfTest(got), transitionsOf(got), token+1)
	}
	// Only the leader watches candidates: the old leader's watch ends with its tenure.
	waitFor(t, "the old leader to stop its candidate watch and say it is not leading", func() bool {
		return !e.Status().IsLeader && cands.watchesStopped()
	})
	waitFor(t, "the Events", func() bool {
		events.mu.Lock()
		defer events.mu.Unlock()
		return strings.Contains(strings.Join(events.reasons, ","), "AppUnhealthy") && strings.Contains(strings.Join(events.reasons, ","), "HandedOver")
	})
	metrics.mu.Lock()
	defer metrics.mu.Unlock()
	if metrics.appHealthy || metrics.exits["unhealthy/handed_over"] != 1 {
		t.Errorf("metrics: app healthy %v, exits %v; want unhealthy and one unhealthy/handed_over", metrics.appHealthy, metrics.exits)
	}
}

func TestRunALeaderWhoseAppRecoversWhileLeavingTheServiceRejoinsItAndKeepsTheLease(t *testing.T) {
	g := gatedLeaderWithSuccessor(t)
	e, api, health, clk, cfg := g.e, g.api, g.health, g.clk, g.cfg

	health.set(false, "HTTP 503")
	waitFor(t, "the leader to leave the Service", func() bool { ok, _ := e.Ready(); return !ok })
	clk.Step(ServiceLeaveTime / 2)
	waitFor(t, "the loop to catch up with the clock", func() bool { return !e.board.lastBeat().Before(clk.Now()) })
	health.set(true, "")
	waitFor(t, "the leader to rejoin the Service", func() bool { ok, _ := e.Ready(); return ok })
	for range 2 * int(ServiceLeaveTime/cfg.RetryPeriod) {
		clk.Step(cfg.RetryPeriod)
		waitFor(t, "the loop to catch up with the clock", func() bool { return !e.board.lastBeat().Before(clk.Now()) })
	}
	if got := api.current(); holderOf(got) != "me" || handoverFromOf(got) != "" || !e.Status().IsLeader {
		t.Fatalf("holder %q, handover-from %q, leader %v: a leader whose app recovered while leaving must keep the Lease",
			holderOf(got), handoverFromOf(got), e.Status().IsLeader)
	}
	if ok, why := e.Ready(); !ok {
		t.Fatalf("not ready after recovering: %s", why)
	}
}

func TestOnExitTheCandidateLeaseSaysUnhealthySoThatNoLeaderChoosesAReplicaGoingAway(t *testing.T) {
	api := newFakeLeases()
	api.store(withUID(heldBy("other", 3, 4), "other-uid"))
	clk := testclock.NewFakeClock(epoch)
	health := &fakeHealth{}
	health.set(true, "")
	cands := newFakeCandidates()
	e, err := New(testConfig("me"), api, &fakeEvents{}, Options{Clock: clk, AppHealth: health, Candidates: cands})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	waitFor(t, "the advertisement", func() bool {
		l := cands.advertised("me")
		return l != nil && l.Annotations[CandidateHealthyAnnotation] == "true"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := cands.advertised("me"); l == nil || l.Annotations[CandidateHealthyAnnotation] != "false" {
		t.Fatalf("after exit the candidate Lease is %+v, want it to say healthy=false", l)
	}
}

func TestANewPodAdvertisesItselfHealthyWithoutWaitingOutTheRetryPeriod(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("leader", 3, 2))
	clk := testclock.NewFakeClock(epoch)
	health := &fakeHealth{}
	health.set(false, "not checked yet")
	cands := newFakeCandidates()
	e, _ := startGated(t, testConfig("me"), api, cands, health, clk)
	waitFor(t, "the unhealthy advertisement of a new pod", func() bool {
		l := cands.advertised("me")
		return e.board.watch().synced && l != nil && l.Annotations[CandidateHealthyAnnotation] == "false"
	})
	// The first check passes at once; the fake clock stands still, so a pause of one retry period would never end.
	health.set(true, "")
	waitFor(t, "the first healthy advertisement, without a pause", func() bool {
		l := cands.advertised("me")
		return l != nil && l.Annotations[CandidateHealthyAnnotation] == "true"
	})
	// A flap after that is paused again: the unhealthy verdict waits out the retry period.
	health.set(false, "503")
	time.Sleep(200 * time.Millisecond)
	if l := cands.advertised("me"); l.Annotations[CandidateHealthyAnnotation] != "true" {
		t.Fatalf("a flap was advertised within the retry period: %v", l.Annotations)
	}
	clk.Step(testConfig("me").RetryPeriod)
	waitFor(t, "the flap advertised after the retry period", func() bool {
		return cands.advertised("me").Annotations[CandidateHealthyAnnotation] == "false"
	})
}
