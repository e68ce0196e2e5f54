package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// leaseWatch follows every Lease of a namespace through one watch from the benchmark process, so that both
// implementations are timed at the same end point: the moment the API server tells a client that another replica
// holds the Lease. Each change is stamped when it arrives.
type leaseWatch struct {
	mu      sync.Mutex
	leases  map[string]leaseState
	changed chan struct{} // closed and replaced on every change
	cancel  context.CancelFunc
	done    chan struct{}
}

// handoverFromAnnotation marks a Lease written over to a successor by its holder (issue 13's contract with
// pkg/elector): the successor's first renewal removes it, and only then does the successor act as the leader.
const handoverFromAnnotation = "leader-election/handover-from"

// leaseState is what the watch last saw of one Lease.
type leaseState struct {
	holder string
	// since is when the current holder was first seen.
	since time.Time
	// changes counts holder changes seen (an empty holder counts as one).
	changes int
	// tenures counts changes from one named holder to another; a release in between, or a holder that takes the
	// Lease back after releasing it, is not a change of leader for the application.
	tenures    int
	lastHolder string
	// handoverFrom is the handover annotation's value ("" when absent); handovers counts the states that newly
	// carried one.
	handoverFrom string
	handovers    int
	// transitions is the Lease's leaseTransitions, the fencing token.
	transitions int32
	// updated is when the holder or the handover annotation last changed.
	updated time.Time
}

// confirmed reports whether a replica holds the Lease and acts on it: a holder named by a handover write is not
// the leader until its first renewal removed the annotation.
func (s leaseState) confirmed() bool { return s.holder != "" && s.handoverFrom == "" }

// watchLeases starts following the Leases of namespace and returns once the watch has its initial state.
func watchLeases(ctx context.Context, cs kubernetes.Interface, namespace string) (*leaseWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	lw := &leaseWatch{leases: map[string]leaseState{}, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace))
	informer := factory.Coordination().V1().Leases().Informer()
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { lw.observe(obj) },
		UpdateFunc: func(_, obj any) { lw.observe(obj) },
	})
	if err != nil {
		cancel()
		return nil, err
	}
	factory.Start(ctx.Done())
	go func() { <-ctx.Done(); factory.Shutdown(); close(lw.done) }()
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), informer.HasSynced) {
		cancel()
		return nil, fmt.Errorf("the Lease watch on namespace %s did not sync within 30s", namespace)
	}
	return lw, nil
}

func (lw *leaseWatch) stop() { lw.cancel(); <-lw.done }

func (lw *leaseWatch) observe(obj any) {
	now := time.Now()
	lease, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return
	}
	holder := ""
	if lease.Spec.HolderIdentity != nil {
		holder = *lease.Spec.HolderIdentity
	}
	from := lease.Annotations[handoverFromAnnotation]
	lw.mu.Lock()
	defer lw.mu.Unlock()
	st, seen := lw.leases[lease.Name]
	if lease.Spec.LeaseTransitions != nil {
		st.transitions = *lease.Spec.LeaseTransitions
	}
	if seen && st.holder == holder && st.handoverFrom == from {
		lw.leases[lease.Name] = st
		return
	}
	if from != "" && (from != st.handoverFrom || holder != st.holder) {
		st.handovers++
	}
	st.handoverFrom, st.updated = from, now
	if !seen || st.holder != holder {
		if seen {
			st.changes++
		}
		st.holder, st.since = holder, now
	}
	if holder != "" {
		if st.lastHolder != "" && holder != st.lastHolder {
			st.tenures++
		}
		st.lastHolder = holder
	}
	lw.leases[lease.Name] = st
	close(lw.changed)
	lw.changed = make(chan struct{})
}

// get is the Lease's last seen state.
func (lw *leaseWatch) get(name string) leaseState {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.leases[name]
}

// wait waits up to timeout until the Lease's holder satisfies ok and returns that holder and when it was first
// seen; what describes the wait for the error.
func (lw *leaseWatch) wait(ctx context.Context, name string, timeout time.Duration, what string, ok func(holder string) bool) (string, time.Time, error) {
	st, err := lw.waitState(ctx, name, timeout, what, func(st leaseState) bool { return ok(st.holder) })
	return st.holder, st.since, err
}

// waitState waits up to timeout until the Lease's state satisfies ok and returns it; what describes the wait for
// the error.
func (lw *leaseWatch) waitState(ctx context.Context, name string, timeout time.Duration, what string, ok func(leaseState) bool) (leaseState, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		lw.mu.Lock()
		st, changed := lw.leases[name], lw.changed
		lw.mu.Unlock()
		if ok(st) {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st, ctx.Err()
		case <-deadline.C:
			return st, fmt.Errorf("lease %s: no %s within %s (holder %q, handover from %q)", name, what, timeout, st.holder, st.handoverFrom)
		}
	}
}

// held reports whether a holder is named.
func held(holder string) bool { return holder != "" }
