package main

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// This file is the part of the Deployment and ReplicaSet controllers that decides a rolling update: how many new
// pods to create and how many old ones to delete at each step, and which old ones go first. The rollout benchmark
// plays it against real elector processes; the functions are pure, so that a table test can hold them to the
// controllers' behaviour.

// rolloutStrategy is a Deployment's RollingUpdate parameters.
type rolloutStrategy struct {
	name                     string
	maxSurge, maxUnavailable intstr.IntOrString
}

// The strategies the rollout benchmark plays: the Deployment default, and the one that never lets a replica go
// before its replacement is ready.
var (
	defaultStrategy = rolloutStrategy{"default strategy (maxSurge 25%, maxUnavailable 25%)",
		intstr.FromString("25%"), intstr.FromString("25%")}
	surgeOnlyStrategy = rolloutStrategy{"maxUnavailable 0 (maxSurge 25%)", intstr.FromString("25%"), intstr.FromInt32(0)}
)

// fenceposts resolves maxSurge (rounded up) and maxUnavailable (rounded down) for n replicas, as the Deployment
// controller does (deploymentutil.ResolveFenceposts): when both come out 0, one replica may be unavailable.
func (s rolloutStrategy) fenceposts(n int) (surge, unavailable int) {
	surge, _ = intstr.GetScaledValueFromIntOrPercent(&s.maxSurge, n, true)
	unavailable, _ = intstr.GetScaledValueFromIntOrPercent(&s.maxUnavailable, n, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

// rolloutCounts is what the Deployment controller sees of a rolling update: the old ReplicaSet's pods (ready until
// deleted; a deleted pod no longer counts) and the new ReplicaSet's pods, of which ready are available.
type rolloutCounts struct{ old, fresh, ready int }

// reconcileRollout is one sync of the Deployment controller's rolling update for n replicas: it either scales the
// new ReplicaSet up (create new pods) or the old one down (delete old pods), never both in one sync, as
// rolloutRolling does. Zero and zero means the controller waits for a pod to become ready.
func reconcileRollout(n, surge, unavailable int, c rolloutCounts) (create, remove int) {
	// reconcileNewReplicaSet: up to n + maxSurge pods in all, and no more new pods than n.
	if up := min(n+surge-(c.old+c.fresh), n-c.fresh); up > 0 {
		return up, 0
	}
	if c.old == 0 {
		return 0, 0
	}
	// reconcileOldReplicaSets: never below n - maxUnavailable available pods, and never count on new pods that
	// are not available yet.
	minAvailable := n - unavailable
	if c.old+c.fresh-minAvailable-(c.fresh-c.ready) <= 0 {
		return 0, 0
	}
	available := c.old + c.ready
	if available <= minAvailable {
		return 0, 0
	}
	return 0, min(c.old, available-minAvailable)
}

// oldPod is an old replica as the ReplicaSet controller ranks it for deletion.
type oldPod struct {
	id string
	// deletionCost is controller.kubernetes.io/pod-deletion-cost: the lower goes first.
	deletionCost int
	// readySince is when it became ready: among equal costs, the more recently ready goes first.
	readySince time.Time
}

// deletionOrder is the order the ReplicaSet controller deletes old pods in (getPodsToDelete's ranking, for pods
// that are all running, ready and on one node): lower pod-deletion-cost first, then the most recently ready.
// With random set, the order is shuffled instead, as when nothing tells the pods apart.
func deletionOrder(pods []oldPod, random bool, rng *rand.Rand) []string {
	s := slices.Clone(pods)
	if random {
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	} else {
		slices.SortStableFunc(s, func(a, b oldPod) int {
			if c := cmp.Compare(a.deletionCost, b.deletionCost); c != 0 {
				return c
			}
			return b.readySince.Compare(a.readySince)
		})
	}
	ids := make([]string, len(s))
	for i, p := range s {
		ids[i] = p.id
	}
	return ids
}
