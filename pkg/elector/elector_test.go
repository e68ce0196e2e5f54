package elector

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// These tests run the whole election loop (watch goroutine, timers) against the in-memory API server
// with a fake clock. Real time only bounds how long the test waits for goroutines to catch up.

// progressTimeout bounds every wait for the loop to react; it is never a timing assertion.
const progressTimeout = 5 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(progressTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", progressTimeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitLeading moves the fake clock on until the elector leads (a replica that never saw the Lease waits a
// lease duration and a retry period before it creates it).
func waitLeading(t *testing.T, e *Elector, clk *testclock.FakeClock) {
	t.Helper()
	for i := 0; !e.Status().IsLeader; i++ {
		if i > 1000 {
			t.Fatal("the elector never led")
		}
		clk.Step(50 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
}

// startElector runs an elector until the test ends; stop ends it early and returns Run's result.
func startElector(t *testing.T, cfg Config, api LeaseAPI, clk *testclock.FakeClock) (e *Elector, events *fakeEvents, stop func() error) {
	t.Helper()
	events = &fakeEvents{}
	e, err := New(cfg, api, events, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- e.Run(ctx) }()
	var stopped bool
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-result:
			case <-time.After(progressTimeout):
				t.Fatal("Run did not return after its context ended")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return e, events, stop
}

func TestRunAcquiresAReleasedLeaseAsSoonAsTheWatchShowsIt(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 3, 2))
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "the elector to see the holder", func() bool { return e.Status().Name == "other" })

	api.store(heldBy("", 3, 2)) // the fake clock stands still: only the watch can tell the elector
	waitFor(t, "the elector to acquire the released Lease", func() bool { return e.Status().IsLeader })
	if got := e.Status().LeaseTransitions; got != 4 {
		t.Errorf("leaseTransitions = %d, want 4", got)
	}
}

func TestRunStandbyMakesNoRequestsUntilTheLeaseExpires(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 3, 2))
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "the watch to be established", func() bool { return e.board.watch().synced && e.Status().Name == "other" })

	// The loop wakes once per retry period for its heartbeat; none of those wake-ups may reach the API.
	for range 3 {
		clk.Step(500 * time.Millisecond)
		waitFor(t, "the loop to catch up with the clock", func() bool { return !e.board.lastBeat().Before(clk.Now()) })
	}
	for verb, want := range map[string]int{"get": 1, "watch": 1, "update": 0, "create": 0} {
		if got := api.count(verb); got != want {
			t.Errorf("%d %s requests while a standby waited %s for a valid lease, want %d", got, verb, 1500*time.Millisecond, want)
		}
	}
	clk.Step(500 * time.Millisecond)
	waitFor(t, "the standby to acquire the expired Lease", func() bool { return e.Status().IsLeader })
}

func TestRunReleasesTheLeaseOnShutdown(t *testing.T) {
	api := newFakeLeases()
	clk := testclock.NewFakeClock(epoch)
	e, events, stop := startElector(t, testConfig("me"), api, clk)
	waitLeading(t, e, clk)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := api.current(); holderOf(got) != "" || transitionsOf(got) != 0 {
		t.Fatalf("after shutdown the Lease has holder %q, token %d; want released, token kept", holderOf(got), transitionsOf(got))
	}
	if e.Status().IsLeader {
		t.Error("still reports leadership after shutdown")
	}
	events.mu.Lock()
	defer events.mu.Unlock()
	if len(events.reasons) != 2 || events.reasons[0] != "Acquired" || events.reasons[1] != "Released" {
		t.Errorf("Events %v, want [Acquired Released]", events.reasons)
	}
}

func TestRunStaysUpAndRetriesWhenTheAPIServerRefuses(t *testing.T) {
	api := newFakeLeases()
	api.setFail(func(string) error { return errRefused })
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "a first read", func() bool { return api.count("get") == 1 })
	for range 20 {
		clk.Step(time.Second)
		waitFor(t, "the loop to catch up with the clock", func() bool { return !e.board.lastBeat().Before(clk.Now()) })
	}
	if ok, _ := e.Ready(); ok {
		t.Error("ready without ever reading the Lease")
	}
	if ok, why := e.Healthy(); !ok {
		t.Errorf("unhealthy while the API server refuses (%s): it should wait, not be restarted", why)
	}
	// Without a backoff, a fake clock that stands still between steps would see thousands of reads.
	if n := api.count("get"); n < 3 || n > 21 {
		t.Errorf("%d reads in 20 one-second steps, want a few (a backoff from 125ms doubling up to 2s)", n)
	}
	api.setFail(nil)
	waitLeading(t, e, clk)
}

func TestRunResumesAClosedWatchAndStartsOverWhenItFellBehind(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 1, 2))
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "the watch to be established", func() bool { return e.board.watch().synced && e.Status().Name == "other" })

	// The server ends the watch after a while, and by then it no longer has our resource version.
	api.setFail(func(verb string) error {
		if verb == "watch" && api.calls["watch"] == 2 {
			return apierrors.NewResourceExpired("too old resource version")
		}
		return nil
	})
	clk.Step(time.Second)
	api.closeWatches()
	waitFor(t, "a fresh read and watch", func() bool { return api.count("get") == 2 && api.count("watch") == 3 })
	waitFor(t, "the watch to be established again", func() bool { return e.board.watch().synced })

	api.store(heldBy("", 1, 2))
	waitFor(t, "the elector to see the release through the new watch and acquire", func() bool { return e.Status().IsLeader })
}

// Defect 4 of issue 9: the first watch started from resourceVersion "", so a deletion between the read and the
// watch was never seen, and a lone replica never created the Lease again.
func TestRunWatchesFromTheReadsResourceVersionAndSeesADeletionInBetween(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 3, 4))
	api.beforeWatch = func() { deleteLease(api) }
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "the elector to learn of the deletion", func() bool {
		s := e.board.current()
		return api.count("watch") == 1 && s.Known && s.Holder == "" && e.board.watch().synced
	})
	clk.Step(4 * time.Second) // the deleted Lease's last holder has run out of lease
	waitFor(t, "the elector to create the Lease", func() bool { return e.Status().IsLeader })
	// Its first write creates the Lease: an update first would be a write to the Lease that no longer existed,
	// an elector that missed the deletion. (Updates after the create are its own renewals.)
	if first := api.firstWrite(); first != "create" {
		t.Errorf("first write to the Lease was %q, want create: the elector did not see the deletion", first)
	}
	if got := api.current(); transitionsOf(got) != 4 {
		t.Errorf("recreated with token %d, want 4", transitionsOf(got))
	}
}

// Defect 3 of issue 9: a standby whose watch stays open but delivers nothing, and whose takeover write then
// conflicts, waited for a watch event for ever.
func TestRunRestartsAWatchThatDeliversNothingAndRereadsAfterAConflict(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 3, 4))
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "the watch to be established", func() bool { return e.board.watch().synced && e.Status().Name == "other" })

	api.muteWatches()
	clk.Step(time.Second)
	renewed := api.current()
	renewed.Spec.RenewTime = ptr.To(metav1.NewMicroTime(clk.Now()))
	api.store(renewed) // the holder renews once more, unseen; then it dies
	clk.Step(3 * time.Second)
	// By its own clock the lease ran out: the standby tries, conflicts, and must not wait for the silent watch.
	waitFor(t, "a takeover attempt", func() bool { return api.count("update") >= 1 })
	waitFor(t, "a fresh read after the conflict or the silent watch", func() bool {
		clk.Step(100 * time.Millisecond)
		return api.count("get") >= 2
	})
	for i := 0; !e.Status().IsLeader; i++ {
		if i > 200 {
			t.Fatalf("no takeover after the holder died behind a silent watch (get %d, watch %d, update %d)", api.count("get"), api.count("watch"), api.count("update"))
		}
		clk.Step(100 * time.Millisecond)
		time.Sleep(2 * time.Millisecond)
	}
	if got := api.current(); holderOf(got) != "me" || transitionsOf(got) != 4 {
		t.Fatalf("holder %q, token %d", holderOf(got), transitionsOf(got))
	}
}

func TestRunRestartsAWatchSilentForALeaseDurationFromAFreshRead(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 3, 300))
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "the watch to be established", func() bool { return e.board.watch().synced && e.Status().Name == "other" })
	api.muteWatches()
	clk.Step(4 * time.Second)
	waitFor(t, "a fresh read and a new watch after a lease duration of silence", func() bool {
		return api.count("get") == 2 && api.count("watch") == 2
	})
}

// The silent-watch timer must not cost the standby API-load target: while a leader renews, its renewals keep
// the watch alive and a standby makes no request at all.
func TestRunStandbyMakesNoRequestsWhileALeaderRenews(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 3, 4))
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, testConfig("me"), api, clk)
	waitFor(t, "the watch to be established", func() bool { return e.board.watch().synced && e.Status().Name == "other" })
	for range 80 { // 40 s of the leader renewing every 500 ms
		clk.Step(500 * time.Millisecond)
		renewed := api.current()
		renewed.Spec.RenewTime = ptr.To(metav1.NewMicroTime(clk.Now()))
		api.store(renewed)
		waitFor(t, "the standby to see the renewal", func() bool { return e.board.current().ObservedExpiry.Equal(clk.Now().Add(4 * time.Second)) })
	}
	for verb, want := range map[string]int{"get": 1, "watch": 1, "update": 0, "create": 0} {
		if got := api.count(verb); got != want {
			t.Errorf("%d %s requests from a standby in 40s of a renewing leader, want %d", got, verb, want)
		}
	}
	if ok, why := e.Ready(); ok || !strings.Contains(why, "other holds") {
		t.Errorf("standby readiness: %v %q", ok, why)
	}
}
