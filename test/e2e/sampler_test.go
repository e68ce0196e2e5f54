package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// sampler follows every EndpointSlice of a namespace through a watch for the whole suite. It records a violation
// whenever one Service has two ready endpoints, and lets scenarios wait for the ready set to change.
type sampler struct {
	mu         sync.Mutex
	slices     map[string]*discoveryv1.EndpointSlice // by slice name
	ready      map[string][]string                   // service -> ready pod names
	changed    map[string]time.Time                  // service -> when its ready set last changed
	events     int
	violations []string
	notify     chan struct{}
}

func startSampler(t *testing.T, cs kubernetes.Interface, ns string) *sampler {
	s := &sampler{slices: map[string]*discoveryv1.EndpointSlice{}, ready: map[string][]string{},
		changed: map[string]time.Time{}, notify: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w, err := cs.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			slice, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			s.observe(ev.Type, slice)
		}
	}()
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	return s
}

func (s *sampler) observe(typ watch.EventType, slice *discoveryv1.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events++
	if typ == watch.Deleted {
		delete(s.slices, slice.Name)
	} else {
		s.slices[slice.Name] = slice
	}
	svc := slice.Labels[discoveryv1.LabelServiceName]
	var ready []string
	for _, sl := range s.slices {
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
	if !slices.Equal(ready, s.ready[svc]) {
		s.ready[svc] = ready
		s.changed[svc] = time.Now()
		close(s.notify)
		s.notify = make(chan struct{})
	}
	if len(ready) > 1 {
		s.violations = append(s.violations, fmt.Sprintf("%s: service %s has %d ready endpoints %v",
			time.Now().Format(time.RFC3339Nano), svc, len(ready), ready))
	}
}

// waitReady waits until the service's ready endpoints satisfy ok and returns them and when they changed to that.
func (s *sampler) waitReady(t *testing.T, svc string, timeout time.Duration, what string, ok func([]string) bool) ([]string, time.Time) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ready, at, notify := s.ready[svc], s.changed[svc], s.notify
		s.mu.Unlock()
		if ok(ready) {
			return ready, at
		}
		select {
		case <-notify:
		case <-deadline:
			t.Fatalf("service %s: ready endpoints %v after %s, want %s", svc, ready, timeout, what)
		}
	}
}

// report fails the test if two ready endpoints were ever seen for one service.
func (s *sampler) report(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("EndpointSlice sampler: %d watch events, %d with two or more ready endpoints for one Service", s.events, len(s.violations))
	if len(s.violations) > 0 {
		t.Errorf("two ready endpoints for one Service:\n%s", strings.Join(s.violations, "\n"))
	}
}
