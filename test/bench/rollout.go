package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// revisionLabel is the label a Deployment's ReplicaSet puts on its pods; the elector reads it from the labels
// file to prefer a successor of the newest revision.
const revisionLabel = "pod-template-hash"

// leaveModes are the two ways our elector can leave on SIGTERM: a direct handover (the default) and today's
// release to a race of the standbys (--handover=false).
var leaveModes = []struct{ name, handover string }{{oursName, "true"}, {raceName, "false"}}

// rolloutCase is one cell of the rollout table.
type rolloutCase struct {
	n        int
	strategy string
	// random deletes the old pods in a random order; otherwise the leader goes last, as the ReplicaSet controller
	// orders them when the leader carries a high pod-deletion-cost.
	random bool
	mode   string
}

// rolloutTrial is one simulated rolling update as the Lease watch saw it.
type rolloutTrial struct {
	// changes is how many times the leader moved to another pod; transitions how much the fencing token rose;
	// handovers how many handover writes the Lease carried. Every rollout ends with a new-revision leader.
	changes, transitions, handovers int
	// took is from the first new pod to a new-revision leader with every old replica gone.
	took time.Duration
}

// rolloutGroup is one Deployment's worth of our electors, in one mode, rolled from revision to revision.
type rolloutGroup struct {
	*group
	n   int
	rev int
	// apps are the replicas' application endpoints, probes the kubelet's view of their readiness.
	mu     sync.Mutex
	apps   map[string]*appEndpoint
	probes map[string]*kubeletProbe
}

// kubeletProbe is the kubelet's readiness probe of one replica's elector as the webhook injects it: every second
// (periodSeconds 1), from a random moment within the first second, one success or failure enough. The controllers
// see a pod ready only from the probe that found it ready, not the instant it was.
type kubeletProbe struct {
	next       time.Time
	ready      bool
	readySince time.Time
}

// startRolloutGroup starts n replicas of revision 0, each with its application endpoint, its labels file and
// member readiness (every follower is ready, as in traffic mode label), and waits until they are all ready and
// follow one leader.
func startRolloutGroup(ctx context.Context, ws *workspace, n int, mode, handover string, t timing) (*rolloutGroup, error) {
	lease := fmt.Sprintf("rollout-%s-%d", mode, n)
	// A Lease that exists without a holder is taken at once; a missing one only after a lease duration (an
	// elector cannot tell it from a Lease deleted under a leader). Deployments that roll have had a leader for long.
	if _, err := ws.cs.CoordinationV1().Leases(benchNamespace).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: lease}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating Lease %s: %w", lease, err)
	}
	rg := &rolloutGroup{group: ws.newGroup(ws.ours, lease, t), n: n, apps: map[string]*appEndpoint{}, probes: map[string]*kubeletProbe{}}
	rg.env = []string{"ELECTOR_READINESS=member", "ELECTOR_HANDOVER=" + handover}
	rg.podEnv = func(id string) ([]string, error) {
		app, err := startApp()
		if err != nil {
			return nil, err
		}
		rg.mu.Lock()
		rg.apps[id] = app
		rev := rg.rev
		rg.mu.Unlock()
		labels, err := writeLabels(ws.dir, id, map[string]string{"app": lease, revisionLabel: revisionName(rev)})
		if err != nil {
			return nil, err
		}
		return []string{"ELECTOR_POD_LABELS_FILE=" + labels, "ELECTOR_APP_CHECK=" + app.check()}, nil
	}
	rg.prefix = fmt.Sprintf("%s-%s", lease, revisionName(0))
	for range n {
		if _, err := rg.add(ctx); err != nil {
			rg.stop()
			return nil, err
		}
	}
	if err := rg.awaitReady(ctx, rg.members()); err != nil {
		rg.stop()
		return nil, err
	}
	if _, err := rg.settle(ctx, t.lease+20*time.Second); err != nil {
		rg.stop()
		return nil, err
	}
	return rg, nil
}

func revisionName(rev int) string { return fmt.Sprintf("rev%d", rev) }

// stop ends the replicas and their application endpoints.
func (rg *rolloutGroup) stop() {
	rg.group.stop()
	rg.mu.Lock()
	defer rg.mu.Unlock()
	for id, app := range rg.apps {
		app.close()
		delete(rg.apps, id)
	}
}

// ready reports whether the kubelet sees the replica ready: its last probe found /readyz answering 200.
func (rg *rolloutGroup) ready(r *replica) bool {
	rg.mu.Lock()
	p := rg.probes[r.id]
	if p == nil {
		p = &kubeletProbe{next: time.Now().Add(rand.N(time.Second))}
		rg.probes[r.id] = p
	}
	due := !time.Now().Before(p.next)
	rg.mu.Unlock()
	if !due {
		return p.ready
	}
	client := http.Client{Timeout: time.Second}
	ok := false
	if resp, err := client.Get(r.base + "/readyz"); err == nil {
		resp.Body.Close()
		ok = resp.StatusCode == http.StatusOK
	}
	rg.mu.Lock()
	defer rg.mu.Unlock()
	if ok && !p.ready {
		p.readySince = time.Now()
	}
	p.ready = ok
	for !time.Now().Before(p.next) {
		p.next = p.next.Add(time.Second)
	}
	return ok
}

// awaitReady waits until every one of rs is ready.
func (rg *rolloutGroup) awaitReady(ctx context.Context, rs []*replica) error {
	return poll(ctx, time.Minute, 20*time.Millisecond, func() (bool, error) {
		for _, r := range rs {
			if r.proc.exited() {
				return false, fmt.Errorf("replica %s exited:\n%s", r.id, r.proc.tail())
			}
			if !rg.ready(r) {
				return false, nil
			}
		}
		return true, nil
	})
}

// rollout rolls the group to its next revision as the Deployment controller would with strategy: new pods are
// started, and once ready (as the kubelet would see them) old ones get SIGTERM, in the ReplicaSet controller's
// order with the leader last, or in a random order. It returns when every old replica has exited and a new one
// leads.
func (rg *rolloutGroup) rollout(ctx context.Context, strategy rolloutStrategy, random bool, rng *rand.Rand) (rolloutTrial, error) {
	surge, unavailable := strategy.fenceposts(rg.n)
	old := rg.members()
	rg.mu.Lock()
	rg.rev++
	rg.mu.Unlock()
	rg.prefix = fmt.Sprintf("%s-%s", rg.lease, revisionName(rg.rev))
	before := rg.ws.leases.get(rg.lease)
	start := time.Now()

	var fresh, terminating []*replica
	for {
		var ready []*replica
		for _, r := range fresh {
			if rg.ready(r) {
				ready = append(ready, r)
			}
		}
		create, remove := reconcileRollout(rg.n, surge, unavailable, rolloutCounts{old: len(old), fresh: len(fresh), ready: len(ready)})
		switch {
		case create > 0:
			for range create {
				r, err := rg.add(ctx)
				if err != nil {
					return rolloutTrial{}, err
				}
				fresh = append(fresh, r)
			}
		case remove > 0:
			holder := rg.ws.leases.get(rg.lease).holder
			pods := make([]oldPod, len(old))
			rg.mu.Lock()
			for i, r := range old {
				pods[i] = oldPod{id: r.id, readySince: rg.probes[r.id].readySince}
				if r.id == holder {
					// What the leader-label controller sets on the Lease holder (pkg/leaderlabel).
					pods[i].deletionCost = 1 << 30
				}
			}
			rg.mu.Unlock()
			for _, id := range deletionOrder(pods, random, rng)[:remove] {
				r := rg.byID(id)
				if err := r.proc.signal(syscall.SIGTERM); err != nil {
					return rolloutTrial{}, fmt.Errorf("signalling %s: %w", id, err)
				}
				rg.remove(r)
				old = slices.DeleteFunc(old, func(x *replica) bool { return x == r })
				terminating = append(terminating, r)
			}
		case len(old) == 0 && len(ready) == len(fresh):
			return rg.finish(ctx, before, start, fresh, terminating)
		default:
			// The controllers act again when a pod's readiness changes.
			if err := waitAnyReady(ctx, rg, fresh, len(ready)); err != nil {
				return rolloutTrial{}, err
			}
		}
	}
}

// waitAnyReady waits until more than had of fresh are ready.
func waitAnyReady(ctx context.Context, rg *rolloutGroup, fresh []*replica, had int) error {
	return poll(ctx, time.Minute, 20*time.Millisecond, func() (bool, error) {
		n := 0
		for _, r := range fresh {
			if r.proc.exited() {
				return false, fmt.Errorf("new replica %s exited:\n%s", r.id, r.proc.tail())
			}
			if rg.ready(r) {
				n++
			}
		}
		return n > had, nil
	})
}

// finish waits for the old replicas to exit and a new one to lead, and reads the rollout's figures.
func (rg *rolloutGroup) finish(ctx context.Context, before leaseState, start time.Time, fresh, terminating []*replica) (rolloutTrial, error) {
	for _, r := range terminating {
		if !r.proc.awaitExit(15 * time.Second) {
			rg.ws.logf("warning: %s did not exit within 15s of SIGTERM", r.id)
		}
		rg.mu.Lock()
		if app := rg.apps[r.id]; app != nil {
			app.close()
			delete(rg.apps, r.id)
		}
		delete(rg.probes, r.id)
		rg.mu.Unlock()
	}
	isNew := func(id string) bool { return slices.ContainsFunc(fresh, func(r *replica) bool { return r.id == id }) }
	after, err := rg.ws.leases.waitState(ctx, rg.lease, rg.timing.lease+20*time.Second, "new-revision leader",
		func(st leaseState) bool { return st.confirmed() && isNew(st.holder) })
	if err != nil {
		return rolloutTrial{}, err
	}
	if _, err := rg.settle(ctx, rg.timing.lease+20*time.Second); err != nil {
		return rolloutTrial{}, err
	}
	return rolloutTrial{
		changes: after.tenures - before.tenures, transitions: int(after.transitions - before.transitions),
		handovers: after.handovers - before.handovers, took: time.Since(start),
	}, nil
}

// simulatedRollouts is every simulated rollout's figures by case.
type simulatedRollouts struct {
	trials map[rolloutCase][]rolloutTrial
}

// runRollouts plays rolling updates of our electors for every size and strategy, deleting the old pods leader last
// and in a random order, with direct handover and with release-and-race: runs rollouts per case, the two modes
// taking turns so that both see the same machine.
func runRollouts(ctx context.Context, ws *workspace, p params) (*simulatedRollouts, error) {
	sizes, strategies, runs, t := p.rolloutSizes, p.rolloutStrategies, p.rolloutRuns, p.rolloutTiming
	res := &simulatedRollouts{trials: map[rolloutCase][]rolloutTrial{}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	for _, n := range sizes {
		var groups []*rolloutGroup
		stopAll := func() {
			for _, g := range groups {
				if g != nil {
					g.stop()
				}
			}
		}
		groups = make([]*rolloutGroup, len(leaveModes))
		errs := make([]error, len(leaveModes))
		var wg sync.WaitGroup
		for i, m := range leaveModes {
			wg.Go(func() { groups[i], errs[i] = startRolloutGroup(ctx, ws, n, m.name, m.handover, t) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			stopAll()
			return nil, err
		}
		for run := range runs {
			for _, s := range strategies {
				for _, random := range p.rolloutRandom {
					for i, g := range groups {
						trial, err := g.rollout(ctx, s, random, rng)
						if err != nil {
							stopAll()
							return nil, fmt.Errorf("rollout of %s, %s: %w", g.lease, s.name, err)
						}
						c := rolloutCase{n: n, strategy: s.name, random: random, mode: leaveModes[i].name}
						res.trials[c] = append(res.trials[c], trial)
						ws.logf("rollout %d/%d N=%-2d %-16s %-8s %s: %d leader change(s), %d handover(s), %s", run+1, runs, n,
							c.mode, orderName(random), s.name, trial.changes, trial.handovers, trial.took.Round(time.Millisecond))
					}
				}
			}
		}
		stopAll()
	}
	return res, nil
}

func orderName(random bool) string {
	if random {
		return "random order"
	}
	return "leader last"
}

// changes are the leader changes of a case's rollouts, in order.
func (r *simulatedRollouts) changes(c rolloutCase) []int {
	var out []int
	for _, t := range r.trials[c] {
		out = append(out, t.changes)
	}
	return out
}

// summarizeChanges is "mean (least–most)" of leader changes.
func summarizeChanges(v []int) string {
	if len(v) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f (%d–%d)", meanInts(v), slices.Min(v), slices.Max(v))
}

func meanInts(v []int) float64 {
	sum := 0
	for _, x := range v {
		sum += x
	}
	return float64(sum) / float64(max(1, len(v)))
}
