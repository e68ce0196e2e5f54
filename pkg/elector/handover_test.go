package elector

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	testclock "k8s.io/utils/clock/testing"
)

func TestChooseSuccessor(t *testing.T) {
	t0 := epoch
	leader := candidate{Name: "old-a", UID: "a", Revision: "old", Started: t0}
	newLeader := candidate{Name: "new-a", UID: "na", Revision: "new", Started: t0.Add(1)}
	c := func(name, rev string, startedAfter time.Duration, healthy bool) candidate {
		return candidate{Name: name, UID: name + "-uid", Healthy: healthy, Revision: rev, Started: t0.Add(startedAfter)}
	}
	for _, tc := range []struct {
		name       string
		candidates []candidate
		want       string // "" = none
	}{
		{"nobody", nil, ""},
		{"only unhealthy", []candidate{c("old-b", "old", 1, false)}, ""},
		{"never the leader itself, by name", []candidate{{Name: "old-a", UID: "other", Healthy: true}}, ""},
		{"never the leader itself, by UID", []candidate{{Name: "renamed", UID: "a", Healthy: true}}, ""},
		{"no UID, no handover", []candidate{{Name: "old-b", Healthy: true}}, ""},
		{"a healthy one", []candidate{c("old-b", "old", 1, false), c("old-c", "old", 2, true)}, "old-c"},
		{"rollout: the new revision wins over an older-started old pod", []candidate{c("old-b", "old", 1, true), c("new-x", "new", 5, true)}, "new-x"},
		{"rollout: newest revision even when that pod is unhealthy, its healthy siblings first",
			[]candidate{c("old-b", "old", 8, true), c("new-x", "new", 5, true), c("new-y", "new", 9, false)}, "new-x"},
		{"rollout: an old pod restarted last does not make the old revision newest for a new pod of another revision",
			[]candidate{c("old-b", "old", 9, true), c("new-x", "new", 5, true)}, "new-x"},
		{"same rank: most recently started", []candidate{c("new-x", "new", 5, true), c("new-y", "new", 6, true)}, "new-y"},
		{"same rank and start: smallest name", []candidate{c("new-y", "new", 5, true), c("new-x", "new", 5, true)}, "new-x"},
		{"no revisions known: most recently started", []candidate{c("b", "", 5, true), c("c", "", 3, true)}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := chooseSuccessor(tc.candidates, leader)
			if tc.want == "" && ok {
				t.Fatalf("chose %q, want nobody", got.Name)
			}
			if tc.want != "" && got.Name != tc.want {
				t.Fatalf("chose %q (found %v), want %q", got.Name, ok, tc.want)
			}
		})
	}
	// A leader of the new revision hands over to a new pod, not to an old one whose elector started later.
	if got, _ := chooseSuccessor([]candidate{c("old-b", "old", -5, true), c("new-y", "new", 2, true), c("old-c", "old", 9, true)}, newLeader); got.Name != "new-y" {
		t.Errorf("a new-revision leader chose %q, want new-y", got.Name)
	}
}

// handedOver is a Lease that from wrote over to the pod to (whose UID is to-uid).
func handedOver(from, to string, transitions int32) *coordinationv1.Lease {
	l := withUID(heldBy(to, transitions, 4), to+"-uid")
	l.Annotations[HandoverFromAnnotation] = from
	return l
}

func TestDecideWithHealthAndHandover(t *testing.T) {
	cfg := testConfig("me")
	now := epoch.Add(10 * time.Second)
	unhealthy := appState{gated: true, unhealthy: true, reason: "503"}
	for _, tc := range []struct {
		name string
		s    state
		want action
	}{
		{"unhealthy standby does not create", state{known: true, app: unhealthy}, wait},
		{"unhealthy standby does not acquire a free Lease", state{known: true, lease: heldBy("", 3, 4), app: unhealthy}, wait},
		{"unhealthy standby does not confirm a handover to itself", state{known: true, lease: handedOver("old", "me", 3), observedAt: now, app: unhealthy}, wait},
		{"healthy standby confirms a handover to itself at once", state{known: true, lease: handedOver("old", "me", 3), observedAt: now}, acquire},
		{"even while holding off after its own step-down", state{known: true, lease: handedOver("old", "me", 3), observedAt: now, holdOffUntil: now.Add(time.Second)}, acquire},
		{"another's unconfirmed handover waits within the bound", state{known: true, lease: handedOver("old", "succ", 3), observedAt: now.Add(-999 * time.Millisecond)}, wait},
		{"another's unconfirmed handover is taken after the bound (2 retry periods)", state{known: true, lease: handedOver("old", "succ", 3), observedAt: now.Add(-time.Second)}, acquire},
		{"a confirmed Lease runs the whole lease duration", state{known: true, lease: withUID(heldBy("succ", 3, 4), "succ-uid"), observedAt: now.Add(-time.Second)}, wait},
		{"unhealthy leader with a healthy successor first leaves the Service", state{known: true, leading: true, lastRenewSent: now, app: unhealthy, successorKnown: true}, leaveService},
		{"a leader out of the Service keeps renewing", state{known: true, leading: true, lastRenewSent: now.Add(-time.Second), app: unhealthy, successorKnown: true, leftServiceAt: now.Add(-time.Second)}, renew},
		{"a leader out of the Service waits out the leave time", state{known: true, leading: true, lastRenewSent: now, app: unhealthy, successorKnown: true, leftServiceAt: now.Add(-ServiceLeaveTime + time.Millisecond)}, wait},
		{"a leader out of the Service for the leave time hands over", state{known: true, leading: true, lastRenewSent: now, app: unhealthy, successorKnown: true, leftServiceAt: now.Add(-ServiceLeaveTime)}, handOver},
		{"a leader whose app recovered while leaving rejoins the Service", state{known: true, leading: true, lastRenewSent: now, successorKnown: true, leftServiceAt: now.Add(-time.Second)}, rejoinService},
		{"a leader whose successor went away while leaving rejoins the Service", state{known: true, leading: true, lastRenewSent: now, app: unhealthy, leftServiceAt: now.Add(-time.Second)}, rejoinService},
		{"a leader out of the Service past its deadline still gives up", state{known: true, leading: true, lastRenewSent: now.Add(-2 * time.Second), app: unhealthy, successorKnown: true, leftServiceAt: now.Add(-ServiceLeaveTime)}, giveUp},
		{"unhealthy leader without a successor keeps renewing", state{known: true, leading: true, lastRenewSent: now.Add(-time.Second), app: unhealthy}, renew},
		{"healthy leader with a successor renews", state{known: true, leading: true, lastRenewSent: now.Add(-time.Second), successorKnown: true}, renew},
		{"an unhealthy leader past its deadline gives up", state{known: true, leading: true, lastRenewSent: now.Add(-2 * time.Second), app: unhealthy, successorKnown: true}, giveUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := decide(&tc.s, now, cfg); got != tc.want {
				t.Fatalf("decide = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestALeaderLeavingTheServiceWakesForItsRenewalsAndForTheHandover(t *testing.T) {
	cfg := testConfig("me")
	unhealthy := appState{gated: true, unhealthy: true, reason: "503"}
	s := state{known: true, leading: true, lastRenewSent: epoch, app: unhealthy, successorKnown: true, leftServiceAt: epoch}
	if act, wake := decide(&s, epoch.Add(100*time.Millisecond), cfg); act != wait || !wake.Equal(epoch.Add(cfg.RetryPeriod)) {
		t.Fatalf("just after leaving: %s until +%s, want wait until the next renewal at +%s", act, wake.Sub(epoch), cfg.RetryPeriod)
	}
	s.lastRenewSent = epoch.Add(ServiceLeaveTime - 100*time.Millisecond)
	if act, wake := decide(&s, s.lastRenewSent, cfg); act != wait || !wake.Equal(epoch.Add(ServiceLeaveTime)) {
		t.Fatalf("near the end of the leave time: %s until +%s, want wait until the handover at +%s", act, wake.Sub(epoch), ServiceLeaveTime)
	}
}

func TestRenewIntervalPacesTheLeaderWhileReadinessKeepsTheRenewDeadline(t *testing.T) {
	cfg := testConfig("me")
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	cfg.RenewInterval = DefaultRenewInterval(cfg.RenewDeadline, cfg.RetryPeriod)
	s := state{known: true, leading: true, lastRenewSent: epoch}
	if act, wake := decide(&s, epoch.Add(2*time.Second), cfg); act != wait || !wake.Equal(epoch.Add(4*time.Second)) {
		t.Fatalf("decide at +2s = %s until +%s, want wait until +4s (renew interval %s)", act, wake.Sub(epoch), cfg.RenewInterval)
	}
	if act, _ := decide(&s, epoch.Add(4*time.Second), cfg); act != renew {
		t.Fatalf("decide at +4s = %s, want renew", act)
	}
	// A failed renewal is retried every retry period: attempts at +4, +6 and +8, each with a full retry period
	// before the deadline at +10.
	s.retryAt = epoch.Add(6 * time.Second)
	if act, wake := decide(&s, epoch.Add(4*time.Second+time.Millisecond), cfg); act != wait || !wake.Equal(epoch.Add(6*time.Second)) {
		t.Fatalf("after a failed renewal: %s until +%s, want wait until +6s", act, wake.Sub(epoch))
	}
	if !(Snapshot{Leading: true, LastRenewSent: epoch}).Fresh(epoch.Add(10*time.Second-time.Millisecond), cfg.RenewDeadline) {
		t.Fatal("readiness must still last the renew deadline from the last successful renewal")
	}
}

func TestObserveAHandedOverLease(t *testing.T) {
	cfg := testConfig("me")
	s := state{}
	observe(&s, handedOver("old", "succ", 5), "", epoch, cfg)
	if got := expiryOf(&s, cfg); !got.Equal(epoch.Add(cfg.handoverBound())) {
		t.Fatalf("an unconfirmed handover expires at +%s, want the handover bound %s", got.Sub(epoch), cfg.handoverBound())
	}
	confirmed := withUID(heldBy("succ", 5, 4), "succ-uid")
	confirmed.ResourceVersion = "2"
	observe(&s, confirmed, "", epoch.Add(time.Second), cfg)
	if got := expiryOf(&s, cfg); !got.Equal(epoch.Add(time.Second + 4*time.Second)) {
		t.Fatalf("a confirmed Lease expires at +%s, want its confirmation + the lease duration", got.Sub(epoch))
	}
}

// withCandidates gives a leading test machine a candidate watch that knows cands.
func withCandidates(m *machine, cands ...candidate) {
	m.candidates = newCandidateSet()
	for _, c := range cands {
		m.candidates.apply(c.Name, c, true)
	}
}

func TestShutdownHandsOverToTheChosenSuccessorWithTokenPlusOne(t *testing.T) {
	api, clk, m := leaderWithCandidates(t, candidate{Name: "succ", UID: "succ-uid", Healthy: true}, candidate{Name: "sick", UID: "sick-uid", Started: epoch.Add(time.Hour)})
	token := transitionsOf(api.current())
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := wantHandedOverToSucc(t, api, token)
	if m.s.leading {
		t.Fatal("still leading after handing over")
	}

	// The successor confirms from the watch event: token + 0, the annotation gone, and only then it leads.
	succ := newTestMachine(t, testConfig("succ"), api, clk)
	succ.observe(got, "")
	if succ.s.leading {
		t.Fatal("the successor leads before its confirmation landed")
	}
	succ.advance(context.Background())
	confirmed := api.current()
	if !succ.s.leading || holderOf(confirmed) != "succ" || transitionsOf(confirmed) != token+1 || handoverFromOf(confirmed) != "" {
		t.Fatalf("confirmation: leading %v, holder %q, token %d (want %d), handover-from %q (want none)",
			succ.s.leading, holderOf(confirmed), transitionsOf(confirmed), token+1, handoverFromOf(confirmed))
	}
}

// wantHandedOverToSucc fails the test unless the Lease was handed over by me to succ (name and UID) with the
// token one above token, and returns it.
func wantHandedOverToSucc(t *testing.T, api *fakeLeases, token int32) *coordinationv1.Lease {
	t.Helper()
	got := api.current()
	if holderOf(got) != "succ" || holderUIDOfTest(got) != "succ-uid" || handoverFromOf(got) != "me" || transitionsOf(got) != token+1 {
		t.Fatalf("Lease after shutdown: holder %q uid %q handover-from %q token %d; want a handover from me to succ (succ-uid) with token %d, never a release",
			holderOf(got), holderUIDOfTest(got), handoverFromOf(got), transitionsOf(got), token+1)
	}
	return got
}

// leaderWithASuccessor is a machine that created the Lease, with handover on and one healthy candidate, succ.
func leaderWithASuccessor(t *testing.T) (*fakeLeases, *testclock.FakeClock, *machine) {
	return leaderWithCandidates(t, candidate{Name: "succ", UID: "succ-uid", Healthy: true})
}

// leaderWithCandidates is a machine that created the Lease, with handover on and these candidates known.
func leaderWithCandidates(t *testing.T, cands ...candidate) (*fakeLeases, *testclock.FakeClock, *machine) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	cfg := testConfig("me")
	cfg.Handover = true
	m := newTestMachine(t, cfg, api, clk)
	createFirst(m, clk)
	withCandidates(m, cands...)
	return api, clk, m
}

// An e2e rollout: SIGTERM cancelled a renewal that had landed, so the handover's write conflicted with it, and the
// leader released the Lease instead: nobody held it until the successor acquired, two changes instead of one.
func TestAHandoverAfterALandedUnansweredRenewalStillHandsOver(t *testing.T) {
	api, clk, m := leaderWithASuccessor(t)
	token := transitionsOf(api.current())
	clk.Step(m.cfg.RetryPeriod)
	api.loseAnswers(true)
	m.advance(context.Background())
	api.loseAnswers(false)
	if api.count("update") != 1 || !m.s.leading {
		t.Fatalf("setup: %d updates, leading %v; want one renewal that landed unanswered, still leading", api.count("update"), m.s.leading)
	}
	if err := m.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantHandedOverToSucc(t, api, token)
}

// A handover that conflicts because another replica holds the Lease now is not tried again from the newer state:
// that Lease is no longer this replica's to hand over (nor to release).
func TestAHandoverThatConflictsWithAnotherHolderLeavesItsLeaseAlone(t *testing.T) {
	api, _, m := leaderWithASuccessor(t)
	token := transitionsOf(api.current()) + 1
	api.store(withUID(heldBy("other", token, 4), "other-uid"))
	_ = m.shutdown(context.Background())
	if got := api.current(); holderOf(got) != "other" || holderUIDOfTest(got) != "other-uid" || transitionsOf(got) != token || handoverFromOf(got) != "" {
		t.Fatalf("after shutdown: holder %q uid %q token %d handover-from %q; want other's Lease untouched", holderOf(got), holderUIDOfTest(got), transitionsOf(got), handoverFromOf(got))
	}
}

func TestWithoutHandoverOrSuccessorTheLeaderReleases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		handover bool
		cands    []candidate
	}{
		{"handover off", false, []candidate{{Name: "succ", UID: "succ-uid", Healthy: true}}},
		{"no healthy candidate", true, []candidate{{Name: "sick", UID: "sick-uid"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeLeases()
			clk := testclock.NewFakeClock(epoch)
			cfg := testConfig("me")
			cfg.Handover = tc.handover
			m := newTestMachine(t, cfg, api, clk)
			createFirst(m, clk)
			withCandidates(m, tc.cands...)
			if err := stepDown(t, m, clk); err != nil {
				t.Fatal(err)
			}
			if got := api.current(); holderOf(got) != "" || handoverFromOf(got) != "" {
				t.Fatalf("holder %q, handover-from %q: want a plain release", holderOf(got), handoverFromOf(got))
			}
		})
	}
}

func TestAnUnhealthyLeaderHandsOverOnlyWhenAHealthySuccessorAppears(t *testing.T) {
	api, clk, m := leaderWithCandidates(t, candidate{Name: "sick", UID: "sick-uid"})
	cfg := m.cfg
	health := &fakeHealth{}
	health.set(false, "HTTP 503")
	m.readHealth(health)
	clk.Step(cfg.RetryPeriod)
	m.advance(context.Background())
	if !m.s.leading || holderOf(api.current()) != "me" {
		t.Fatal("an unhealthy leader without a healthy successor must keep the Lease")
	}
	m.candidates.apply("succ", candidate{Name: "succ", UID: "succ-uid", Healthy: true}, true)
	m.advance(context.Background())
	if ok, why := ready(m.snapshot(), watchState{}, false, clk.Now(), cfg); ok || !m.s.leading || holderOf(api.current()) != "me" {
		t.Fatalf("ready %v (%s), leading %v, holder %q: want out of the Service, still holding the Lease", ok, why, m.s.leading, holderOf(api.current()))
	}
	for elapsed := time.Duration(0); elapsed < ServiceLeaveTime; elapsed += cfg.RetryPeriod {
		clk.Step(cfg.RetryPeriod)
		m.advance(context.Background())
	}
	if got := api.current(); m.s.leading || holderOf(got) != "succ" || handoverFromOf(got) != "me" {
		t.Fatalf("leading %v, holder %q: want a handover to succ once it is a healthy candidate", m.s.leading, holderOf(got))
	}
	// It then holds off until healthy again: it does not take the Lease back after the bound.
	clk.Step(time.Minute)
	m.advance(context.Background())
	if holderOf(api.current()) != "succ" || m.s.leading {
		t.Fatal("an unhealthy replica took the Lease")
	}
}

func TestAHandoverNobodyConfirmsIsTakenByAnotherAfterTheBound(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	m := newTestMachine(t, testConfig("third"), api, clk)
	m.observe(api.store(handedOver("old", "dead", 7)), "")
	clk.Step(testConfig("x").handoverBound() - time.Millisecond)
	m.advance(context.Background())
	if holderOf(api.current()) != "dead" {
		t.Fatal("took an unconfirmed handover before the bound")
	}
	clk.Step(time.Millisecond)
	m.advance(context.Background())
	if got := api.current(); holderOf(got) != "third" || transitionsOf(got) != 8 || handoverFromOf(got) != "" {
		t.Fatalf("after the bound: holder %q token %d handover-from %q; want third, 8, none", holderOf(got), transitionsOf(got), handoverFromOf(got))
	}
	// The dead successor wakes up: its confirmation conflicts and it never leads.
	dead := newTestMachine(t, testConfig("dead"), api, clk)
	dead.s = state{known: true, lease: handedOver("old", "dead", 7), observedAt: clk.Now()}
	dead.s.lease.ResourceVersion = "101"
	dead.advance(context.Background())
	if dead.s.leading || holderOf(api.current()) != "third" {
		t.Fatal("a successor that confirmed after another took the Lease leads")
	}
}

// fakeHealth is an AppHealth the test sets.
type fakeHealth struct {
	healthy bool
	reason  string
	changed chan struct{}
}

func (f *fakeHealth) set(healthy bool, reason string) {
	if f.changed == nil {
		f.changed = make(chan struct{}, 1)
	}
	f.healthy, f.reason = healthy, reason
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fakeHealth) Healthy() (bool, string)  { return f.healthy, f.reason }
func (f *fakeHealth) Changed() <-chan struct{} { return f.changed }

// timingOutLeases makes every update, once timing out is on, take its whole timeout (the fake clock moves to the
// request's deadline) and fail: an API server that accepts connections but does not answer.
type timingOutLeases struct {
	*fakeLeases
	clk       *testclock.FakeClock
	timingOut bool
	sent      []time.Duration // when each timed-out update was sent, from the clock's start
}

func (f *timingOutLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if !f.timingOut {
		return f.fakeLeases.Update(ctx, l)
	}
	f.sent = append(f.sent, f.clk.Now().Sub(epoch))
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, context.DeadlineExceeded
	}
	// The context's deadline is on the real clock: the request's timeout is how far ahead of real time it is.
	f.clk.Step(time.Until(deadline).Round(10 * time.Millisecond))
	return nil, context.DeadlineExceeded
}

// A renewal that times out is retried before the renew deadline, at every accepted renew interval, and the
// default interval keeps the three attempts docs/elector.md promises (at 15s/10s/2s: +4, +6, +8, deadline +10).
func TestATimedOutRenewalIsRetriedBeforeTheRenewDeadline(t *testing.T) {
	cfg := testConfig("me")
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	largest := cfg.RetryPeriod
	for d := cfg.RetryPeriod; d <= cfg.RenewDeadline; d += 100 * time.Millisecond {
		if CheckRenewInterval(d, cfg.RenewDeadline, cfg.RetryPeriod) == nil {
			largest = d
		}
	}
	for _, tc := range []struct {
		name         string
		interval     time.Duration
		wantAttempts int
	}{
		{"default interval", DefaultRenewInterval(cfg.RenewDeadline, cfg.RetryPeriod), 3},
		{"largest accepted interval " + largest.String(), largest, 2},
		{"the retry period (client-go)", cfg.RetryPeriod, 0}, // 0: at least 2, however many fit
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfg
			cfg.RenewInterval = tc.interval
			clk := testclock.NewFakeClock(epoch)
			api := &timingOutLeases{fakeLeases: newFakeLeases(), clk: clk}
			m := newTestMachine(t, cfg, api, clk)
			createFirst(m, clk)
			acquiredAt := clk.Now()
			api.timingOut = true
			for m.s.leading && clk.Now().Before(acquiredAt.Add(2*cfg.RenewDeadline)) {
				m.advance(context.Background())
				clk.Step(10 * time.Millisecond)
			}
			// Renewals only: once it gave up, the standby's first acquisition of its own Lease is another update.
			attempts := 0
			for _, at := range api.sent {
				if epoch.Add(at).Before(acquiredAt.Add(cfg.RenewDeadline)) {
					attempts++
				}
			}
			if attempts < 2 || tc.wantAttempts != 0 && attempts != tc.wantAttempts {
				t.Fatalf("renew interval %s: %d renewal attempts before giving up (sent at %v after the clock's start, leader since %v), want %d: a renewal that times out must be retried before the renew deadline",
					tc.interval, attempts, api.sent, acquiredAt.Sub(epoch), max(2, tc.wantAttempts))
			}
		})
	}
}

// A Lease deleted while this replica last saw it handed over and unconfirmed: the successor may have confirmed
// and led since (the confirmation lost to a watch that stayed silent, then a fresh read that finds no Lease), so
// nobody may create the Lease before the successor's full lease duration, not just the handover bound, has run
// out; otherwise the new creator and the successor, still renewing until its next write meets the deletion,
// lead at once.
func TestADeletedHandedOverLeaseIsWaitedOutForTheWholeLeaseDuration(t *testing.T) {
	cfg := testConfig("me")
	s := state{}
	handed := handedOver("old", "succ", 5)
	handed.ResourceVersion = "1"
	observe(&s, handed, "", epoch, cfg)
	observe(&s, nil, "2", epoch.Add(cfg.handoverBound()), cfg)
	if want := epoch.Add(4 * time.Second); s.createNotBefore.Before(want) {
		t.Fatalf("may create the deleted Lease at +%s, want no earlier than +%s (the successor's lease duration)", s.createNotBefore.Sub(epoch), want.Sub(epoch))
	}
	if act, _ := decide(&s, epoch.Add(cfg.handoverBound()+time.Millisecond), cfg); act != wait {
		t.Fatalf("decide right after the deletion = %s, want wait", act)
	}
}
