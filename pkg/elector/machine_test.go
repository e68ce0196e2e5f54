package elector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// These tests drive the machine directly, one input at a time, with a fake clock: every timing rule is
// checked to the millisecond without a single sleep.

func TestStandbyAcquiresExactlyWhenTheLeaseExpiresByItsOwnClock(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("other", 4, 2)), "")

	if wake := m.advance(context.Background()); !wake.Equal(epoch.Add(2 * time.Second)) {
		t.Fatalf("a standby should wake when the lease expires, %s after it saw the last change; wakes at %s", 2*time.Second, wake.Sub(epoch))
	}
	clk.Step(2*time.Second - time.Millisecond)
	m.advance(context.Background())
	if n := api.count("update"); n != 0 {
		t.Fatalf("acquired 1ms before the lease expired (%d updates)", n)
	}
	clk.Step(time.Millisecond)
	m.advance(context.Background())
	got := api.current()
	if holderOf(got) != "me" || !m.s.leading {
		t.Fatalf("did not acquire at expiry: holder %q, leading %v", holderOf(got), m.s.leading)
	}
	if transitionsOf(got) != 5 {
		t.Errorf("leaseTransitions = %d after a change of holder from 4, want 5 (the fencing token must grow)", transitionsOf(got))
	}
	if !m.snapshot().Fresh(clk.Now(), m.cfg.RenewDeadline) {
		t.Error("a replica that just acquired must count as a fresh leader")
	}
}

func TestEveryObservedChangeRestartsTheStandbysCount(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("other", 4, 2)), "")
	clk.Step(1500 * time.Millisecond)
	renewed := api.current()
	renewed.Spec.RenewTime.Time = renewed.Spec.RenewTime.Add(time.Second)
	m.observe(api.store(renewed), "")

	clk.Step(1999 * time.Millisecond)
	m.advance(context.Background())
	if n := api.count("update"); n != 0 {
		t.Fatalf("acquired %s after the holder's last renewal, before the lease duration", 1999*time.Millisecond)
	}
	clk.Step(time.Millisecond)
	m.advance(context.Background())
	if holderOf(api.current()) != "me" {
		t.Fatal("did not acquire a lease duration after the last observed renewal")
	}
}

func TestReleasedLeaseIsAcquiredAtOnce(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("", 7, 2)), "")
	m.advance(context.Background())
	if got := api.current(); holderOf(got) != "me" || transitionsOf(got) != 8 {
		t.Fatalf("released Lease not acquired at once with the token incremented: holder %q, leaseTransitions %d", holderOf(got), transitionsOf(got))
	}
}

func TestAbsentLeaseIsCreated(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(nil, "")
	// A replica that never saw the Lease cannot know whether it was just deleted under a holder that has not
	// noticed, nor which token it carried: it waits a lease duration and a retry period, so that any holder has
	// run out and any replica that remembers the Lease creates it first, with the remembered token.
	if wake := m.advance(context.Background()); api.current() != nil || !wake.Equal(epoch.Add(4500*time.Millisecond)) {
		t.Fatalf("created at once (%v) or wakes at %s; want to wait a lease duration and a retry period", api.current() != nil, wake.Sub(epoch))
	}
	clk.SetTime(epoch.Add(4500 * time.Millisecond))
	m.advance(context.Background())
	got := api.current()
	if holderOf(got) != "me" || transitionsOf(got) != 0 || !m.s.leading {
		t.Fatalf("Lease not created with this replica as holder: %+v", got)
	}
	if *got.Spec.LeaseDurationSeconds != 4 {
		t.Errorf("leaseDurationSeconds = %d, want 4", *got.Spec.LeaseDurationSeconds)
	}
}

func TestLeaseDurationIsRoundedUpForStandbys(t *testing.T) {
	cfg := testConfig("me")
	cfg.LeaseDuration = 2100 * time.Millisecond
	if got := cfg.leaseDurationSeconds(); got != 3 {
		t.Fatalf("leaseDurationSeconds for %s = %d, want 3: rounding down would let a standby take over before the promise ends", cfg.LeaseDuration, got)
	}
}

func TestReplicaRestartedUnderTheSameNameTakesItsLeaseBackWithoutATransition(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(withUID(heldBy("me", 3, 2), "me-uid")), "")
	m.advance(context.Background())
	if got := api.current(); !m.s.leading || transitionsOf(got) != 3 {
		t.Fatalf("leading %v, leaseTransitions %d: the same holder keeps its token", m.s.leading, transitionsOf(got))
	}
}

func TestLeaderRenewsOncePerRetryPeriod(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	createFirst(m, clk)
	writes := func() int { return api.count("create") + api.count("update") }
	if writes() != 1 {
		t.Fatalf("%d writes to acquire, want 1", writes())
	}
	for period := 1; period <= 10; period++ {
		clk.Step(499 * time.Millisecond)
		m.advance(context.Background())
		clk.Step(time.Millisecond)
		m.advance(context.Background())
		m.advance(context.Background()) // an extra wake-up must not cause an extra write
		if want := 1 + period; writes() != want {
			t.Fatalf("after %d retry periods: %d writes, want %d (one renewal per period)", period, writes(), want)
		}
	}
	if !m.s.leading || holderOf(api.current()) != "me" {
		t.Fatal("lost leadership while renewing successfully")
	}
}

func TestLeaderThatCannotRenewTurnsUnreadyAndGivesUpAtTheRenewDeadlineWithoutReleasing(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	cfg := testConfig("me")
	m := newTestMachine(t, cfg, api, clk)
	createFirst(m, clk)
	acquiredAt := clk.Now()
	api.setFail(func(verb string) error {
		return apierrors.NewServiceUnavailable("etcd is gone")
	})

	for clk.Now().Before(acquiredAt.Add(cfg.RenewDeadline - 100*time.Millisecond)) {
		clk.Step(100 * time.Millisecond)
		m.advance(context.Background())
		if ok, why := ready(m.snapshot(), watchState{synced: true, lastActivity: clk.Now()}, false, clk.Now(), cfg); !ok {
			t.Fatalf("unready %s after the last renewal, before the renew deadline: %s", clk.Now().Sub(acquiredAt), why)
		}
	}
	if attempts := api.count("update"); attempts != 3 {
		t.Errorf("%d renewal attempts within the renew deadline, want 3 (one per retry period)", attempts)
	}
	clk.SetTime(acquiredAt.Add(cfg.RenewDeadline))
	// Before the loop even runs: readiness is computed from time, not from a flag the loop must clear.
	if ok, _ := ready(m.snapshot(), watchState{synced: true, lastActivity: clk.Now()}, false, clk.Now(), cfg); ok {
		t.Fatal("still ready at the renew deadline, measured from when the renewal was sent")
	}
	m.advance(context.Background())
	if m.s.leading {
		t.Fatal("still leading after the renew deadline passed without a renewal")
	}
	if holderOf(api.current()) != "me" {
		t.Error("a leader that gives up must not release (it could not reach the API server anyway)")
	}
}

func TestStepDownReleasesKeepsTheTokenAndHoldsOffForOneLeaseDuration(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("", 5, 2)), "")
	m.advance(context.Background())
	if err := stepDown(t, m, clk); err != nil {
		t.Fatal(err)
	}
	if got := api.current(); holderOf(got) != "" || transitionsOf(got) != 6 {
		t.Fatalf("after step-down: holder %q, leaseTransitions %d; want released with the token kept (6)", holderOf(got), transitionsOf(got))
	}
	if m.s.leading {
		t.Fatal("still leading after stepping down")
	}
	clk.Step(3999 * time.Millisecond)
	m.advance(context.Background())
	if holderOf(api.current()) != "" {
		t.Fatal("took the Lease back within one lease duration of stepping down")
	}
	clk.Step(time.Millisecond)
	m.advance(context.Background())
	if got := api.current(); holderOf(got) != "me" || transitionsOf(got) != 7 {
		t.Fatalf("nobody took the Lease within a lease duration: this replica should take it back (holder %q, token %d)", holderOf(got), transitionsOf(got))
	}
}

// stepDown asks m to step down and drives it with the clock until it answered: a leader first leaves the
// Service for ServiceLeaveTime, renewing, and answers once it has left the Lease.
func stepDown(t *testing.T, m *machine, clk *testclock.FakeClock) error {
	t.Helper()
	reply := make(chan error, 1)
	m.requestStepDown(reply)
	for range 100 {
		m.advance(context.Background())
		select {
		case err := <-reply:
			return err
		default:
		}
		if ok, why := ready(m.snapshot(), watchState{}, false, clk.Now(), m.cfg); ok {
			t.Fatalf("ready (%s) while stepping down", why)
		}
		clk.Step(100 * time.Millisecond)
	}
	t.Fatal("the step-down never ended")
	return nil
}

// leaderSteppingDown is a machine that created the Lease and has just started a step-down; reply gets its outcome.
func leaderSteppingDown(t *testing.T) (*fakeLeases, *testclock.FakeClock, *machine, chan error) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	createFirst(m, clk)
	reply := make(chan error, 1)
	m.requestStepDown(reply)
	m.advance(context.Background())
	return api, clk, m, reply
}

func TestAStepDownLeavesTheServiceFirstAndKeepsTheLeaseForTheLeaveTime(t *testing.T) {
	api, clk, m, reply := leaderSteppingDown(t)
	start := clk.Now()
	for clk.Since(start) < ServiceLeaveTime {
		if ok, why := ready(m.snapshot(), watchState{}, false, clk.Now(), m.cfg); ok || !strings.Contains(why, "stepping down") {
			t.Fatalf("%s into the step-down: ready %v (%s), want unready while leaving the Service", clk.Since(start), ok, why)
		}
		if !m.s.leading || holderOf(api.current()) != "me" || len(reply) != 0 {
			t.Fatalf("%s into the step-down: leading %v, holder %q: the Lease must stay until the Service dropped this pod", clk.Since(start), m.s.leading, holderOf(api.current()))
		}
		clk.Step(100 * time.Millisecond)
		m.advance(context.Background())
	}
	if err := <-reply; err != nil || m.s.leading || holderOf(api.current()) != "" {
		t.Fatalf("after %s: %v, leading %v, holder %q; want released", ServiceLeaveTime, err, m.s.leading, holderOf(api.current()))
	}
}

func TestAShutdownDuringAStepDownLeavesAtOnce(t *testing.T) {
	api, _, m, reply := leaderSteppingDown(t)
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-reply; err != nil || holderOf(api.current()) != "" {
		t.Fatalf("step-down answered %v, holder %q: SIGTERM does not wait out the leave time", err, holderOf(api.current()))
	}
}

func TestStepDownOnAStandbyIsRefused(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("other", 1, 2)), "")
	if err := stepDown(t, m, clk); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("step-down on a standby: %v, want ErrNotLeader", err)
	}
	if n := api.count("update"); n != 0 {
		t.Fatalf("a standby's step-down wrote the Lease %d times", n)
	}
}

func TestLosingARaceWaitsForTheWatchInsteadOfRetrying(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	a := newTestMachine(t, testConfig("a"), api, clk)
	b := newTestMachine(t, testConfig("b"), api, clk)
	released := api.store(heldBy("", 1, 2))
	a.observe(released, "")
	b.observe(released, "")
	a.advance(context.Background())
	b.advance(context.Background())
	if !a.s.leading || b.s.leading {
		t.Fatalf("a leading %v, b leading %v: exactly the first writer must win", a.s.leading, b.s.leading)
	}
	before := api.count("update")
	for range 5 {
		clk.Step(100 * time.Millisecond)
		b.advance(context.Background())
	}
	if api.count("update") != before {
		t.Fatal("the loser retried its write before learning the newer Lease")
	}
	b.observe(api.current(), "")
	if wake := b.advance(context.Background()); !wake.Equal(clk.Now().Add(4 * time.Second)) {
		t.Fatalf("the loser should wait for the winner's lease to expire; wakes in %s", wake.Sub(clk.Now()))
	}
}

func TestLeaderThatSeesAnotherHolderStopsLeading(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	createFirst(m, clk)
	taken := api.current()
	taken.Spec.HolderIdentity = ptr.To("other")
	m.observe(api.store(taken), "")
	if m.s.leading {
		t.Fatal("still leading after the watch showed another holder")
	}
	if ok, _ := ready(m.snapshot(), watchState{synced: true, lastActivity: clk.Now()}, false, clk.Now(), m.cfg); ok {
		t.Fatal("ready after losing the Lease")
	}
}

func TestLateWatchEventsDoNotUndoNewerKnowledge(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	old := api.store(heldBy("", 1, 2))
	m.observe(old, "")
	m.advance(context.Background()) // acquires: the Lease is now newer than old
	stale := old.DeepCopy()
	stale.Spec.HolderIdentity = ptr.To("other")
	m.observe(stale, "")
	if !m.s.leading {
		t.Fatal("an event older than this replica's own write took its leadership away")
	}
}

// Defect 2 of issue 9: a deleted Lease was recreated at once with token 0 while the old leader could still be
// within its renew deadline.
func TestDeletedLeaseEndsLeadershipAtOnceAndIsRecreatedAfterTheLeaseWithAHigherToken(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("", 6, 4)), "")
	m.advance(context.Background()) // leads with token 7
	clk.Step(time.Second)
	deleteLease(api)
	m.observe(nil, api.rvString())
	if m.s.leading {
		t.Fatal("still leading after the Lease was deleted")
	}
	if wake := m.advance(context.Background()); api.current() != nil || !wake.Equal(epoch.Add(4*time.Second)) {
		t.Fatalf("recreated the Lease (%v) or wakes at %s; want to wait out the last tenure (until 4s)", api.current() != nil, wake.Sub(epoch))
	}
	clk.SetTime(epoch.Add(4 * time.Second))
	m.advance(context.Background())
	if got := api.current(); holderOf(got) != "me" || transitionsOf(got) != 8 {
		t.Fatalf("recreated Lease: holder %q, token %d; want this replica with token 8 (highest seen + 1)", holderOf(got), transitionsOf(got))
	}
}

func TestAStandbyWaitsOutTheDeletedLeasesHolderAndCreatesWithTheHighestTokenPlusOne(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("other", 11, 4)), "")
	clk.Step(3 * time.Second) // the holder's renewals keep arriving
	renewed := api.current()
	renewed.Spec.RenewTime = ptr.To(metav1.NewMicroTime(clk.Now()))
	m.observe(api.store(renewed), "")
	clk.Step(500 * time.Millisecond)
	deleteLease(api)
	m.observe(nil, api.rvString())
	clk.SetTime(epoch.Add(7*time.Second - time.Millisecond))
	m.advance(context.Background())
	if api.count("create") != 0 {
		t.Fatal("created the Lease while its last holder could still be within its lease")
	}
	clk.SetTime(epoch.Add(7 * time.Second))
	m.advance(context.Background())
	if got := api.current(); holderOf(got) != "me" || transitionsOf(got) != 12 {
		t.Fatalf("recreated Lease: holder %q, token %d; want token 12", holderOf(got), transitionsOf(got))
	}
}

// Found by the fault soak: a process that started while a deleted Lease was being waited out read "no Lease",
// had nothing to remember, and created it at once with token 0, below the token the others remembered.
func TestAReplicaThatNeverSawTheLeaseLetsThoseWhoRememberItCreateItFirst(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	remembers := newTestMachine(t, testConfig("old"), api, clk)
	remembers.observe(api.store(heldBy("gone", 9, 4)), "")
	clk.Step(time.Second)
	deleteLease(api)
	remembers.observe(nil, api.rvString())
	newcomer := newTestMachine(t, testConfig("new"), api, clk)
	newcomer.observe(nil, "")
	for clk.Now().Before(epoch.Add(6 * time.Second)) {
		newcomer.advance(context.Background())
		remembers.advance(context.Background())
		clk.Step(100 * time.Millisecond)
	}
	if got := api.current(); holderOf(got) != "old" || transitionsOf(got) != 10 {
		t.Fatalf("holder %q, token %d; want the replica that remembers token 9 to create it with 10", holderOf(got), transitionsOf(got))
	}
}

func TestAcquisitionNeverLowersTheTokenBelowTheHighestSeen(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("other", 20, 4)), "")
	deleteLease(api)
	m.observe(nil, api.rvString())
	// Someone recreated it at once, from nothing, with token 0.
	m.observe(api.store(heldBy("", 0, 4)), "")
	m.advance(context.Background())
	if got := api.current(); holderOf(got) != "me" || transitionsOf(got) != 21 {
		t.Fatalf("holder %q, token %d; want 21: above every token this replica has seen", holderOf(got), transitionsOf(got))
	}
}

func TestStandbyWriteFailuresBackOffExponentiallyUpToTheLeaseDuration(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("", 1, 2)), "")
	api.setFail(func(string) error { return apierrors.NewForbidden(leaseResource, "demo", errors.New("no RBAC")) })
	var pauses []time.Duration
	for range 7 {
		wake := m.advance(context.Background())
		pauses = append(pauses, wake.Sub(clk.Now()))
		clk.SetTime(wake)
	}
	want := []time.Duration{125 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range want {
		if pauses[i] != want[i] {
			t.Fatalf("pauses between failed acquisitions = %v, want %v", pauses, want)
		}
	}
}

func TestShutdownReleasesOnlyWhatItHolds(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("other", 1, 2)), "")
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if holderOf(api.current()) != "other" || api.count("update") != 0 {
		t.Fatal("a standby's shutdown touched the Lease")
	}
	m.observe(api.store(heldBy("", 1, 2)), "")
	m.advance(context.Background())
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.current(); holderOf(got) != "" || transitionsOf(got) != 2 {
		t.Fatalf("the leader's shutdown left holder %q, token %d; want released, token kept", holderOf(got), transitionsOf(got))
	}
}

func TestReleaseAfterATimedOutRenewalThatLandedStillReleases(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	createFirst(m, clk)
	// A renewal the server applied but whose answer never came back: the Lease moved on under us.
	landed := api.current()
	landed.Spec.RenewTime.Time = landed.Spec.RenewTime.Add(time.Second)
	api.store(landed)
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if holderOf(api.current()) != "" {
		t.Fatal("the Lease still names this replica after shutdown")
	}
}

func TestReleaseRetriesADroppedConnection(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	createFirst(m, clk)
	failures := 2
	api.setFail(func(verb string) error {
		if verb == "update" && failures > 0 {
			failures--
			return errors.New("connection reset by peer")
		}
		return nil
	})
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatalf("release after two dropped connections: %v", err)
	}
	if holderOf(api.current()) != "" || api.count("update") != 3 {
		t.Fatalf("holder %q after %d updates; want released on the third", holderOf(api.current()), api.count("update"))
	}
}

func TestALeaseDurationAboveTheMaximumCountsAsTheMaximum(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("other", 1, 86400)), "")
	if wake := m.advance(context.Background()); !wake.Equal(epoch.Add(MaxLeaseDuration)) {
		t.Fatalf("a Lease claiming a day is waited out until %s; want the %s cap", wake.Sub(epoch), MaxLeaseDuration)
	}
	clk.SetTime(epoch.Add(MaxLeaseDuration))
	m.advance(context.Background())
	if holderOf(api.current()) != "me" {
		t.Fatal("did not acquire once the capped lease ran out")
	}
}

// Defect 1 of issue 9: a force-deleted pod still runs while its replacement, with the same name and a new UID,
// starts. The replacement must treat the old pod's Lease as a stranger's.
func TestASecondProcessWithThePodsNameButAnotherUIDWaitsOutTheLeaseAndRaisesTheToken(t *testing.T) {
	for _, tc := range []struct{ name, uid string }{{"another UID", "old-uid"}, {"no UID at all", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeLeases()
			clk := testclock.NewFakeClock(epoch)
			m := newTestMachine(t, testConfig("me"), api, clk)
			held := heldBy("me", 3, 4)
			if tc.uid != "" {
				held = withUID(held, tc.uid)
			}
			m.observe(api.store(held), "")
			if wake := m.advance(context.Background()); !wake.Equal(epoch.Add(4*time.Second)) || api.count("update") != 0 {
				t.Fatalf("took a Lease naming this pod's name but not its UID at once (%d updates, wakes at %s); want to wait out the lease", api.count("update"), wake.Sub(epoch))
			}
			if m.snapshot().Leading {
				t.Fatal("counts itself as leader from a Lease another pod of its name wrote")
			}
			clk.SetTime(epoch.Add(4 * time.Second))
			m.advance(context.Background())
			got := api.current()
			if !m.s.leading || transitionsOf(got) != 4 || holderUIDOfTest(got) != "me-uid" {
				t.Fatalf("after the lease ran out: leading %v, token %d, holder-uid %q; want leading with token 4 and this pod's UID", m.s.leading, transitionsOf(got), holderUIDOfTest(got))
			}
		})
	}
}

func TestTheOldProcessStopsLeadingWhenAPodOfItsNameWithAnotherUIDTookTheLease(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	old := testConfig("web-0")
	old.UID = "old-uid"
	m := newTestMachine(t, old, api, clk)
	createFirst(m, clk)
	if !m.s.leading || holderUIDOfTest(api.current()) != "old-uid" {
		t.Fatalf("the first pod did not lead with its UID on the Lease: %+v", api.current())
	}
	// The replacement took the Lease (after waiting it out by its clock) while this process could not renew.
	taken := withUID(api.current(), "new-uid")
	taken.Spec.LeaseTransitions = ptr.To[int32](1)
	api.store(taken)
	clk.Step(500 * time.Millisecond)
	m.advance(context.Background()) // the renewal conflicts
	m.observe(api.current(), "")    // and the newer state arrives
	if m.s.leading {
		t.Fatal("still leading after the Lease passed to another pod of the same name")
	}
	if ok, _ := ready(m.snapshot(), watchState{synced: true, lastActivity: clk.Now()}, false, clk.Now(), m.cfg); ok {
		t.Fatal("ready after another pod of the same name took the Lease")
	}
}

func TestEveryWriteCarriesThePodUIDAndTheReleaseRemovesIt(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	createFirst(m, clk)
	if got := holderUIDOfTest(api.current()); got != "me-uid" {
		t.Fatalf("create wrote holder-uid %q", got)
	}
	clk.Step(500 * time.Millisecond)
	m.advance(context.Background())
	if got := holderUIDOfTest(api.current()); got != "me-uid" || api.count("update") != 1 {
		t.Fatalf("renewal wrote holder-uid %q (%d updates)", got, api.count("update"))
	}
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := api.current()
	if _, has := got.Annotations[HolderUIDAnnotation]; has || holderOf(got) != "" {
		t.Fatalf("released Lease: holder %q, annotations %v; want no holder and no holder-uid", holderOf(got), got.Annotations)
	}
	m2 := newTestMachine(t, testConfig("b"), api, clk)
	m2.observe(api.current(), "")
	m2.advance(context.Background())
	if got := api.current(); holderUIDOfTest(got) != "b-uid" || transitionsOf(got) != 1 {
		t.Fatalf("acquisition of the released Lease: holder-uid %q, token %d", holderUIDOfTest(got), transitionsOf(got))
	}
}

// Defect 3 of issue 9: every wait has a timer. A write that conflicted waits for the newer state at most about
// one retry period, then reads it.
func TestAConflictedWriteRereadsTheLeaseAfterARetryPeriodWithoutAWatchEvent(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	a := newTestMachine(t, testConfig("a"), api, clk)
	b := newTestMachine(t, testConfig("b"), api, clk)
	released := api.store(heldBy("", 1, 4))
	a.observe(released, "")
	b.observe(released, "")
	a.advance(context.Background())
	if wake := b.advance(context.Background()); wake.IsZero() || wake.After(clk.Now().Add(500*time.Millisecond)) {
		t.Fatalf("after a conflict the loser wakes at %v; want a timer of at most one retry period", wake)
	}
	clk.Step(500 * time.Millisecond)
	b.advance(context.Background())
	if api.count("get") != 1 || holderOf(b.s.lease) != "a" {
		t.Fatalf("the loser did not read the newer Lease (%d reads, it knows holder %q)", api.count("get"), holderOf(b.s.lease))
	}
}

// Defect 8 of issue 9: an acquisition cancelled (SIGTERM) or timed out that did land on the server was not
// released at shutdown, so the standbys waited a whole lease.
func TestShutdownReleasesAnAcquisitionWhoseAnswerWasLost(t *testing.T) {
	for _, op := range []string{"acquire", "create"} {
		t.Run(op, func(t *testing.T) {
			api := newFakeLeases()
			clk := testclock.NewFakeClock(epoch)
			m := newTestMachine(t, testConfig("me"), api, clk)
			if op == "acquire" {
				m.observe(api.store(heldBy("", 5, 4)), "")
			} else {
				m.observe(nil, "")
				clk.Step(m.cfg.LeaseDuration + m.cfg.RetryPeriod)
			}
			api.loseAnswers(true)
			m.advance(context.Background())
			api.loseAnswers(false)
			if m.s.leading || holderOf(api.current()) != "me" {
				t.Fatalf("setup: leading %v, holder %q; want the write landed without this replica knowing", m.s.leading, holderOf(api.current()))
			}
			if err := m.shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := api.current(); holderOf(got) != "" {
				t.Fatalf("after shutdown the Lease still names %q: standbys wait a whole lease", holderOf(got))
			}
		})
	}
}

// A CI run: SIGTERM came while an acquisition's answer was lost, and the one read that decides whether to release
// went to a connection the same fault had killed; it timed out, and the standbys waited a whole lease.
func TestShutdownRetriesAnUnansweredReadBeforeTheRelease(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("", 5, 4)), "")
	api.loseAnswers(true)
	m.advance(context.Background())
	api.loseAnswers(false)
	unanswered := 2
	api.setFail(func(verb string) error {
		if verb == "get" && unanswered > 0 {
			unanswered--
			return context.DeadlineExceeded
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), shutdownReleaseTimeout)
	defer cancel()
	if err := m.shutdown(ctx); err != nil {
		t.Fatalf("shutdown after two unanswered reads: %v", err)
	}
	if got := api.current(); holderOf(got) != "" || api.count("get") != 3 {
		t.Fatalf("after shutdown the Lease names %q (%d reads); want it released after the third read", holderOf(got), api.count("get"))
	}
}

func TestShutdownAfterALostAnswerLeavesAnotherHoldersLeaseAlone(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("", 5, 4)), "")
	api.setFail(func(verb string) error {
		if verb == "update" {
			return context.DeadlineExceeded // this time the write did not land
		}
		return nil
	})
	m.advance(context.Background())
	api.setFail(nil)
	api.store(withUID(heldBy("other", 6, 4), "other-uid"))
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.current(); holderOf(got) != "other" || api.count("update") != 1 {
		t.Fatalf("shutdown touched another holder's Lease: holder %q, %d updates", holderOf(got), api.count("update"))
	}
}

// createFirst makes m the creator of a Lease nobody has seen yet: it observes the absence, waits as a replica
// without memory must, and creates.
func createFirst(m *machine, clk *testclock.FakeClock) {
	m.observe(nil, "")
	clk.Step(m.cfg.LeaseDuration + m.cfg.RetryPeriod)
	m.advance(context.Background())
}

// Found by the 30-minute fault soak: a standby's backoff, grown while the API server did not answer, survived
// answers (conflicts) from a server that was back, so one slow request after a Lease deletion cost a full lease
// duration more without a leader. Any answer from the server restarts the backoff.
func TestAnAnswerFromTheServerRestartsTheBackoff(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	m.observe(api.store(heldBy("", 1, 4)), "")
	api.setFail(func(string) error { return context.DeadlineExceeded })
	for range 6 {
		clk.SetTime(m.advance(context.Background()))
	}
	api.setFail(nil)
	api.store(heldBy("", 2, 4)) // the Lease moved on: the next write conflicts, an answer from the server
	m.advance(context.Background())
	m.observe(api.current(), "")
	api.setFail(func(string) error { return context.DeadlineExceeded })
	if wake := m.advance(context.Background()); wake.Sub(clk.Now()) != 125*time.Millisecond {
		t.Fatalf("after the server answered, the next failure waits %s; want the first backoff step, 125ms", wake.Sub(clk.Now()))
	}
}

// A candidate Lease of another election can carry this election's Lease name (Lease "web", pod "web-0": candidate
// Lease "web-web-0", the elected Lease of a workload named web-web-0), created by that candidate while this
// Lease was absent. The policy judges a write that keeps the candidate label as a candidate write for the other
// Lease and refuses it, so the elector must drop the label when it takes the Lease, or the election is frozen.
func TestTakingALeaseThatCarriesACandidateLabelDropsTheLabel(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("me"), api, clk)
	squatter := withUID(heldBy("web-0", 0, 4), "web-0-uid")
	squatter.Labels = map[string]string{CandidateForLabel: "web", "team": "kept"}
	m.observe(api.store(squatter), "")
	m.advance(context.Background())
	if m.s.leading {
		t.Fatal("took a Lease whose holder's lease has not run out")
	}
	clk.Step(4 * time.Second)
	m.advance(context.Background())
	got := api.current()
	if !m.s.leading || holderOf(got) != "me" {
		t.Fatalf("leading %v, holder %q: want this replica to take the Lease after its holder's lease ran out", m.s.leading, holderOf(got))
	}
	if v, ok := got.Labels[CandidateForLabel]; ok {
		t.Fatalf("the taken Lease still carries %s=%q: the policy would refuse every write of this election", CandidateForLabel, v)
	}
	if got.Labels["team"] != "kept" {
		t.Errorf("labels %v: other labels must be kept", got.Labels)
	}
	clk.Step(time.Second)
	m.advance(context.Background())
	if _, ok := api.current().Labels[CandidateForLabel]; ok || api.count("update") < 2 {
		t.Fatalf("after a renewal (%d updates): labels %v", api.count("update"), api.current().Labels)
	}
}

// A replica whose watch went silent misses what happened to the Lease before it was deleted; its fresh read finds
// only that it is gone. Whoever acquired or renewed it meanwhile did so before the deletion and may lead for a
// renew deadline after its last renewal, so the Lease is not created before a renew deadline after the deletion
// was seen, even when the last state this replica saw was a free Lease.
func TestADeletionSeenLateIsWaitedOutForARenewDeadline(t *testing.T) {
	cfg := testConfig("me")
	for _, tc := range []struct {
		name string
		last *coordinationv1.Lease
	}{
		{"last seen free", heldBy("", 3, 4)},
		{"last seen handed over", handedOver("old", "succ", 3)},
		{"last seen held", withUID(heldBy("other", 3, 4), "other-uid")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := state{}
			last := tc.last.DeepCopy()
			last.ResourceVersion = "1"
			observe(&s, last, "", epoch, cfg)
			seen := epoch.Add(10 * time.Second) // the watch was silent; the restart's read finds no Lease
			observe(&s, nil, "", seen, cfg)
			if act, wake := decide(&s, seen, cfg); act != wait || wake.Before(seen.Add(cfg.RenewDeadline)) {
				t.Fatalf("decide when the deletion is seen = %s (wake +%s), want to wait until a renew deadline (%s) has passed", act, wake.Sub(seen), cfg.RenewDeadline)
			}
			if act, _ := decide(&s, seen.Add(cfg.RenewDeadline), cfg); act != create {
				t.Fatalf("decide a renew deadline after the deletion was seen = %s, want create", act)
			}
		})
	}
}
