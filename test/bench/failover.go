package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"
)

// replicasPerGroup is the size of every election group in the failover and load benchmarks.
const replicasPerGroup = 3

// failover settles the group, signals its leader at a random moment within one retry period (so that the signal
// falls anywhere in the leader's renewal cycle and the baseline standbys' polling cycles), and returns the time
// from the signal until the benchmark's Lease watch shows another replica holding the Lease. The old replica is
// then replaced by a new one with a new identity, as a Deployment replaces a pod.
func (g *group) failover(ctx context.Context, sig syscall.Signal) (time.Duration, error) {
	var leader *replica
	for attempt := 0; ; attempt++ {
		var err error
		if leader, err = g.settle(ctx, g.timing.lease+20*time.Second); err != nil {
			return 0, err
		}
		select {
		case <-time.After(rand.N(g.timing.retry)):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		// On a loaded machine a leader with short timings may lose the Lease by itself during the pause; the
		// trial then starts again from the new leader rather than time a failover that already happened.
		if g.ws.leases.get(g.lease).holder == leader.id {
			break
		}
		if attempt == 3 {
			return 0, fmt.Errorf("lease %s keeps changing hands by itself", g.lease)
		}
	}
	start := time.Now()
	if err := leader.proc.signal(sig); err != nil {
		return 0, fmt.Errorf("signalling %s: %w", leader.id, err)
	}
	// The baseline's standbys may need a whole lease duration and a poll more when a release fails.
	_, at, err := g.ws.leases.wait(ctx, g.lease, g.timing.lease+15*time.Second, "new holder after "+sig.String()+" to "+leader.id,
		func(h string) bool { return h != "" && h != leader.id })
	if err != nil {
		return 0, err
	}
	if at.Before(start) {
		return 0, fmt.Errorf("lease %s changed hands before %s was signalled", g.lease, leader.id)
	}
	// Our elector and the baseline both exit within about two seconds of SIGTERM; one that does not is killed
	// and reported, as a real pod would be killed at the end of its grace period. (No second SIGTERM: our
	// elector takes a second signal as a request to exit at once.)
	if !leader.proc.awaitExit(10 * time.Second) {
		g.ws.logf("warning: %s did not exit within 10s of %s", leader.id, sig)
	}
	g.remove(leader)
	if _, err := g.add(ctx); err != nil {
		return 0, err
	}
	return at.Sub(start), nil
}

// runGraceful runs trials graceful failovers (SIGTERM to the leader) for each implementation, alternating
// between them so that both see the same machine and API server over time.
func runGraceful(ctx context.Context, ws *workspace, trials int, t timing) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	var groups []*group
	defer func() {
		for _, g := range groups {
			g.stop()
		}
	}()
	for _, im := range ws.impls() {
		g, err := ws.startGroup(ctx, im, "graceful-"+im.name, replicasPerGroup, t)
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	for i := range trials {
		for _, g := range groups {
			d, err := g.failover(ctx, syscall.SIGTERM)
			if err != nil {
				return nil, fmt.Errorf("graceful failover %d of %s: %w", i+1, g.impl.name, err)
			}
			out[g.impl.name] = append(out[g.impl.name], d)
			ws.logf("graceful failover %2d/%d %-8s %s", i+1, trials, g.impl.name, d.Round(time.Millisecond))
		}
	}
	return out, nil
}

// runCrash runs trials crash failovers (SIGKILL to the leader) for each implementation. A crash failover waits
// out the lease, so the trials run in parallelGroups independent groups per implementation at once, each on its
// own Lease, ours and the baseline side by side; each group runs its share of the trials one after another.
func runCrash(ctx context.Context, ws *workspace, trials, parallelGroups int, t timing) (map[string][]time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		out      = map[string][]time.Duration{}
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	for _, im := range ws.impls() {
		for gi := range parallelGroups {
			share := trials / parallelGroups
			if gi < trials%parallelGroups {
				share++
			}
			if share == 0 {
				continue
			}
			wg.Go(func() {
				g, err := ws.startGroup(ctx, im, fmt.Sprintf("crash-%s-%d", im.name, gi), replicasPerGroup, t)
				if err != nil {
					fail(err)
					return
				}
				defer g.stop()
				for range share {
					d, err := g.failover(ctx, syscall.SIGKILL)
					if err != nil {
						fail(fmt.Errorf("crash failover in %s: %w", g.lease, err))
						return
					}
					mu.Lock()
					out[im.name] = append(out[im.name], d)
					n := len(out[im.name])
					mu.Unlock()
					ws.logf("crash failover %2d/%d %-8s %s (%s)", n, trials, im.name, d.Round(time.Millisecond), g.lease)
				}
			})
		}
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}
