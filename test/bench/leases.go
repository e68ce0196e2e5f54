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

// leaseState is what the watch last saw of one Lease.
type leaseState struct {
	holder string
	// since is when the current holder was first seen.
	since time.Time
	// changes counts holder changes seen (an empty holder counts as one).
	changes int
}

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
	lw.mu.Lock()
	defer lw.mu.Unlock()
	st, seen := lw.leases[lease.Name]
	if seen && st.holder == holder {
		return
	}
	if seen {
		st.changes++
	}
	st.holder, st.since = holder, now
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
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		lw.mu.Lock()
		st, changed := lw.leases[name], lw.changed
		lw.mu.Unlock()
		if ok(st.holder) {
			return st.holder, st.since, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", time.Time{}, ctx.Err()
		case <-deadline.C:
			return "", time.Time{}, fmt.Errorf("lease %s: no %s within %s (holder %q)", name, what, timeout, st.holder)
		}
	}
}

// held reports whether a holder is named.
func held(holder string) bool { return holder != "" }
