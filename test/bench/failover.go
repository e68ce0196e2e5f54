package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"
)

// replicasPerGroup is the size of every election group in the failover and load benchmarks.
const replicasPerGroup = 3

// failover settles the group, signals its leader at a random moment within one retry period (so that the signal
// falls anywhere in the leader's renewal cycle and the baseline standbys' polling cycles), and returns the time
// from the signal until the benchmark's Lease watch shows another replica holding the Lease and acting on it:
// after a direct handover, that is the successor's first renewal, which removes the handover annotation; after a
// release, the acquisition itself. written is when the Lease first named another replica (the handover write;
// the same moment after a release). The old replica is then replaced by a new one with a new identity, as a
// Deployment replaces a pod.
func (g *group) failover(ctx context.Context, sig syscall.Signal) (written, confirmed time.Duration, err error) {
	var leader *replica
	for attempt := 0; ; attempt++ {
		var err error
		if leader, err = g.settle(ctx, g.timing.lease+20*time.Second); err != nil {
			return 0, 0, err
		}
		select {
		case <-time.After(rand.N(g.timing.retry)):
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
		// On a loaded machine a leader with short timings may lose the Lease by itself during the pause; the
		// trial then starts again from the new leader rather than time a failover that already happened.
		if g.ws.leases.get(g.lease).holder == leader.id {
			break
		}
		if attempt == 3 {
			return 0, 0, fmt.Errorf("lease %s keeps changing hands by itself", g.lease)
		}
	}
	start := time.Now()
	if err := leader.proc.signal(sig); err != nil {
		return 0, 0, fmt.Errorf("signalling %s: %w", leader.id, err)
	}
	// The baseline's standbys may need a whole lease duration and a poll more when a release fails.
	st, err := g.ws.leases.waitState(ctx, g.lease, g.timing.lease+15*time.Second, "new holder acting after "+sig.String()+" to "+leader.id,
		func(st leaseState) bool { return st.confirmed() && st.holder != leader.id })
	if err != nil {
		return 0, 0, err
	}
	if st.since.Before(start) {
		return 0, 0, fmt.Errorf("lease %s changed hands before %s was signalled", g.lease, leader.id)
	}
	// Our elector and the baseline both exit within about two seconds of SIGTERM; one that does not is killed
	// and reported, as a real pod would be killed at the end of its grace period. (No second SIGTERM: our
	// elector takes a second signal as a request to exit at once.)
	if !leader.proc.awaitExit(10 * time.Second) {
		g.ws.logf("warning: %s did not exit within 10s of %s", leader.id, sig)
	}
	g.remove(leader)
	if _, err := g.add(ctx); err != nil {
		return 0, 0, err
	}
	return st.since.Sub(start), st.updated.Sub(start), nil
}

// Names of the graceful failover's groups: our elector as shipped (direct handover), our elector with
// --handover=false (today's release to a race of the standbys), and client-go's LeaderElector.
const (
	oursName     = "ours"
	raceName     = "release-and-race"
	baselineName = "baseline"
)

// graceful is what the graceful failovers measured, by group name.
type graceful struct {
	// confirmed is the time from SIGTERM until another replica holds the Lease and acts on it; written until
	// the Lease first named another replica.
	confirmed, written map[string][]time.Duration
}

// against is our elector as shipped and the named group as the baseline, in the shape percentileRows takes.
func (g *graceful) against(baseline string) map[string][]time.Duration {
	return map[string][]time.Duration{"ours": g.confirmed[oursName], "baseline": g.confirmed[baseline]}
}

// runGraceful runs trials graceful failovers (SIGTERM to the leader) for our elector as shipped, our elector
// releasing to a race (--handover=false) and the baseline, taking turns so that all three see the same machine and
// API server over time.
func runGraceful(ctx context.Context, ws *workspace, trials int, t timing) (*graceful, error) {
	out := &graceful{confirmed: map[string][]time.Duration{}, written: map[string][]time.Duration{}}
	var groups []*group
	defer func() {
		for _, g := range groups {
			g.stop()
		}
	}()
	for _, v := range []struct {
		name string
		im   *impl
		env  []string
	}{{oursName, ws.ours, nil}, {raceName, ws.ours, []string{"ELECTOR_HANDOVER=false"}}, {baselineName, ws.base, nil}} {
		g := ws.newGroup(v.im, "graceful-"+v.name, t)
		g.env = v.env
		groups = append(groups, g)
		for range replicasPerGroup {
			if _, err := g.add(ctx); err != nil {
				return nil, err
			}
		}
	}
	for i := range trials {
		for _, g := range groups {
			name := strings.TrimPrefix(g.lease, "graceful-")
			written, confirmed, err := g.failover(ctx, syscall.SIGTERM)
			if err != nil {
				return nil, fmt.Errorf("graceful failover %d of %s: %w", i+1, name, err)
			}
			out.confirmed[name] = append(out.confirmed[name], confirmed)
			out.written[name] = append(out.written[name], written)
			ws.logf("graceful failover %2d/%d %-16s %s (Lease written over after %s)", i+1, trials, name,
				confirmed.Round(time.Millisecond), written.Round(time.Millisecond))
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
					_, d, err := g.failover(ctx, syscall.SIGKILL)
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
