package elector

import (
	"context"
	"sort"
	"sync"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"
)

// candidateSet is what the leader knows of the candidates, kept by its candidate watch and read by the election
// loop when it chooses a successor: no request at handover time.
type candidateSet struct {
	mu     sync.Mutex
	byName map[string]candidate
	// changed has a value whenever the set changed (capacity 1), so that an unhealthy leader waiting for a
	// healthy candidate hands over as soon as one appears.
	changed chan struct{}
}

func newCandidateSet() *candidateSet {
	return &candidateSet{byName: map[string]candidate{}, changed: make(chan struct{}, 1)}
}

// list is every known candidate, by name.
func (c *candidateSet) list() []candidate {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]candidate, 0, len(c.byName))
	for _, v := range c.byName {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// apply folds one watch event into the set.
func (c *candidateSet) apply(name string, cand candidate, present bool) {
	c.mu.Lock()
	if present {
		c.byName[name] = cand
	} else {
		delete(c.byName, name)
	}
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// reset forgets every candidate: the watch starts over and sends them all again.
func (c *candidateSet) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byName = map[string]candidate{}
}

// watchCandidates keeps set current from one watch on the candidate Leases until ctx ends (the leader stopped
// leading). A watch from "" starts with every existing candidate; one that ends is resumed from the last
// resource version, or started over when the server no longer has it.
func (e *Elector) watchCandidates(ctx context.Context, set *candidateSet) {
	resourceVersion, failures := "", 0
	for ctx.Err() == nil {
		if resourceVersion == "" {
			set.reset()
		}
		w, err := e.candidates.Watch(ctx, resourceVersion)
		if err == nil {
			e.problems.succeeded("watch the candidate Leases")
			failures = 0
			resourceVersion, err = e.consumeCandidates(ctx, w, resourceVersion, set)
		}
		if ctx.Err() != nil {
			return
		}
		if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
			resourceVersion = ""
			continue
		}
		failures++
		if err != nil {
			e.problems.failed("watch the candidate Leases", err)
		}
		select {
		case <-e.clock.After(e.retry.delay(failures)):
		case <-ctx.Done():
			return
		}
	}
}

// consumeCandidates applies a watch's events to set until it ends; it returns the resource version to resume from.
func (e *Elector) consumeCandidates(ctx context.Context, w watch.Interface, resourceVersion string, set *candidateSet) (string, error) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return resourceVersion, nil
		case ev, open := <-w.ResultChan():
			if !open {
				return resourceVersion, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified, watch.Deleted:
				l, ok := ev.Object.(*coordinationv1.Lease)
				if !ok {
					continue
				}
				resourceVersion = l.ResourceVersion
				cand, isCandidate := candidateOf(l, e.cfg)
				set.apply(l.Name, cand, isCandidate && ev.Type != watch.Deleted)
			case watch.Bookmark:
				if acc, err := meta.Accessor(ev.Object); err == nil {
					resourceVersion = acc.GetResourceVersion()
				}
			case watch.Error:
				return resourceVersion, apierrors.FromObject(ev.Object)
			}
		}
	}
}
