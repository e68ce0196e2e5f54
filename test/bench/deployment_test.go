package main

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFencepostsResolveAsTheDeploymentController(t *testing.T) {
	for _, tc := range []struct {
		s                     rolloutStrategy
		n, surge, unavailable int
	}{
		{defaultStrategy, 3, 1, 0},
		{defaultStrategy, 5, 2, 1},
		{defaultStrategy, 10, 3, 2},
		{surgeOnlyStrategy, 3, 1, 0},
		{surgeOnlyStrategy, 10, 3, 0},
		// Both 0 would never move: the controller lets one replica be unavailable.
		{rolloutStrategy{"zero", surgeOnlyStrategy.maxUnavailable, surgeOnlyStrategy.maxUnavailable}, 4, 0, 1},
	} {
		if s, u := tc.s.fenceposts(tc.n); s != tc.surge || u != tc.unavailable {
			t.Errorf("%s, %d replicas: maxSurge %d, maxUnavailable %d; want %d, %d", tc.s.name, tc.n, s, u, tc.surge, tc.unavailable)
		}
	}
}

// TestRolloutStepsFollowTheDeploymentController plays whole rollouts in which every new pod turns ready as soon as
// the controller waits, and compares the steps with what kube-controller-manager does: "+k" creates k new pods,
// "-k" deletes k old ones, "ready" is a wait for new pods.
func TestRolloutStepsFollowTheDeploymentController(t *testing.T) {
	for _, tc := range []struct {
		s     rolloutStrategy
		n     int
		steps string
	}{
		{defaultStrategy, 3, "+1 ready -1 +1 ready -1 +1 ready -1"},
		{defaultStrategy, 5, "+2 -1 +1 ready -3 +2 ready -1"},
		{surgeOnlyStrategy, 5, "+2 ready -2 +2 ready -2 +1 ready -1"},
		{defaultStrategy, 10, "+3 -2 +2 ready -5 +5 ready -3"},
		{surgeOnlyStrategy, 10, "+3 ready -3 +3 ready -3 +3 ready -3 +1 ready -1"},
	} {
		surge, unavailable := tc.s.fenceposts(tc.n)
		c := rolloutCounts{old: tc.n}
		var steps []string
		for range 100 {
			create, remove := reconcileRollout(tc.n, surge, unavailable, c)
			if c.old+c.fresh > tc.n+surge || c.old+c.ready < tc.n-unavailable {
				t.Fatalf("%s, N = %d: %+v breaks the fenceposts", tc.s.name, tc.n, c)
			}
			switch {
			case create > 0:
				c.fresh += create
				steps = append(steps, "+"+itoa(create))
			case remove > 0:
				c.old -= remove
				steps = append(steps, "-"+itoa(remove))
			case c.old == 0 && c.ready == c.fresh:
			default:
				c.ready = c.fresh
				steps = append(steps, "ready")
				continue
			}
			if c.old == 0 && c.ready == c.fresh && c.fresh == tc.n {
				break
			}
		}
		if got := strings.Join(steps, " "); got != tc.steps {
			t.Errorf("%s, N = %d:\n got %s\nwant %s", tc.s.name, tc.n, got, tc.steps)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestDeletionOrderPutsTheLeaderLast(t *testing.T) {
	now := time.Now()
	pods := []oldPod{
		{id: "leader", deletionCost: 1 << 30, readySince: now.Add(-time.Hour)},
		{id: "older", readySince: now.Add(-2 * time.Minute)},
		{id: "newest", readySince: now},
		{id: "newer", readySince: now.Add(-time.Minute)},
	}
	if got, want := deletionOrder(pods, false, nil), []string{"newest", "newer", "older", "leader"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	// A random order is a permutation, and over many draws the leader is not always last.
	rng := rand.New(rand.NewPCG(1, 2))
	leaderLast := 0
	for range 50 {
		got := deletionOrder(pods, true, rng)
		if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, []string{"leader", "newer", "newest", "older"}) {
			t.Fatalf("random order %v is not a permutation", got)
		}
		if got[len(got)-1] == "leader" {
			leaderLast++
		}
	}
	if leaderLast == 50 {
		t.Error("a random order always put the leader last")
	}
}
