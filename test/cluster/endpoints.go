package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// Endpoints follows every EndpointSlice of a namespace through a watch. It keeps each Service's ready endpoints
// (pod names), records a violation whenever one Service has two ready endpoints, and lets callers wait for the
// ready set to change.
type Endpoints struct {
	mu         sync.Mutex
	slices     map[string]*discoveryv1.EndpointSlice // by slice name
	ready      map[string][]string                   // service -> ready pod names, sorted
	changed    map[string]time.Time                  // service -> when its ready set last changed
	events     int
	violations []string
	notify     chan struct{}
	stop       func()
}

// WatchEndpoints starts following the namespace's EndpointSlices; Stop ends it.
func WatchEndpoints(ctx context.Context, cs kubernetes.Interface, ns string) (*Endpoints, error) {
	e := &Endpoints{slices: map[string]*discoveryv1.EndpointSlice{}, ready: map[string][]string{},
		changed: map[string]time.Time{}, notify: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	w, err := cs.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if slice, ok := ev.Object.(*discoveryv1.EndpointSlice); ok {
				e.observe(ev.Type, slice)
			}
		}
	}()
	e.stop = func() { cancel(); w.Stop(); <-done }
	return e, nil
}

// Stop ends the watch.
func (e *Endpoints) Stop() { e.stop() }

func (e *Endpoints) observe(typ watch.EventType, slice *discoveryv1.EndpointSlice) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events++
	if typ == watch.Deleted {
		delete(e.slices, slice.Name)
	} else {
		e.slices[slice.Name] = slice
	}
	svc := slice.Labels[discoveryv1.LabelServiceName]
	var ready []string
	for _, sl := range e.slices {
		if sl.Labels[discoveryv1.LabelServiceName] != svc {
			continue
		}
		for _, ep := range sl.Endpoints {
			if (ep.Conditions.Ready == nil || *ep.Conditions.Ready) && ep.TargetRef != nil {
				ready = append(ready, ep.TargetRef.Name)
			}
		}
	}
	sort.Strings(ready)
	if !slices.Equal(ready, e.ready[svc]) {
		e.ready[svc] = ready
		e.changed[svc] = time.Now()
		close(e.notify)
		e.notify = make(chan struct{})
	}
	if len(ready) > 1 {
		e.violations = append(e.violations, fmt.Sprintf("%s: service %s has %d ready endpoints %v",
			time.Now().Format(time.RFC3339Nano), svc, len(ready), ready))
	}
}

// Ready returns the Service's ready endpoints (pod names) as last seen.
func (e *Endpoints) Ready(svc string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ready[svc])
}

// WaitReady waits until the Service's ready endpoints satisfy ok and returns them and when they became so.
func (e *Endpoints) WaitReady(ctx context.Context, svc string, timeout time.Duration, ok func([]string) bool) ([]string, time.Time, error) {
	deadline := time.After(timeout)
	for {
		e.mu.Lock()
		ready, at, notify := slices.Clone(e.ready[svc]), e.changed[svc], e.notify
		e.mu.Unlock()
		if ok(ready) {
			return ready, at, nil
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ready, at, ctx.Err()
		case <-deadline:
			return ready, at, fmt.Errorf("service %s: ready endpoints %v after %s", svc, ready, timeout)
		}
	}
}

// Summary returns how many watch events were seen and every moment a Service had two ready endpoints.
func (e *Endpoints) Summary() (events int, violations []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.events, slices.Clone(e.violations)
}
