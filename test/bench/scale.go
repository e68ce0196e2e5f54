package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scaleResult is many election groups of our elector against one API server.
type scaleResult struct {
	groups, replicas int
	timing           timing
	// launch is how long starting every process took; allLeaders is from the first start until every Lease
	// had a holder.
	launch, allLeaders time.Duration
	// window is the steady-state measurement; leaseRate counts Lease and Event requests per second by
	// "<verb> <resource>" and totalRate every request the API server served, from its own metrics.
	window    time.Duration
	leaseRate map[string]float64
	totalRate float64
	// changes is how many times a Lease changed hands during the window (0 expected).
	changes int
	// failovers are graceful failovers of single groups while all the others run.
	failovers []time.Duration
	// rssMean and rssMax are over every elector at the end of the window.
	rssMean, rssMax int64
}

// runScale starts groups election groups of replicas of our elector each, waits until every group has a leader
// and every standby follows it, measures the API server's request rate for window, then fails over failovers
// groups one at a time with SIGTERM.
func runScale(ctx context.Context, ws *workspace, groups, replicas int, t timing, window time.Duration, failovers int) (*scaleResult, error) {
	res := &scaleResult{groups: groups, replicas: replicas, timing: t, window: window}
	if avail, err := memAvailable(); err == nil {
		// About 20 MiB per elector plus the API server's growth; fail early with a clear message rather than
		// let the kernel kill processes half way.
		if need := int64(groups*replicas) * 40 << 20; avail < need {
			return nil, fmt.Errorf("scale: %d electors need about %d MiB, only %d MiB available; lower --scale-groups or --scale-replicas",
				groups*replicas, need>>20, avail>>20)
		}
	}
	gs := make([]*group, groups)
	for i := range gs {
		gs[i] = ws.newGroup(ws.ours, fmt.Sprintf("scale-%03d", i), t)
	}
	defer func() {
		var wg sync.WaitGroup
		for _, g := range gs {
			wg.Go(g.stop)
		}
		wg.Wait()
	}()

	ws.logf("scale: starting %d electors (%d groups of %d, %s)", groups*replicas, groups, replicas, t)
	start := time.Now()
	// Replica r of every group before replica r+1 of any, so that every group gets a candidate early, as when
	// many Deployments roll out at once; a few starts at a time keep the machine responsive.
	jobs := make(chan *group)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range 8 {
		wg.Go(func() {
			for g := range jobs {
				if _, err := g.add(ctx); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for range replicas {
		for _, g := range gs {
			select {
			case jobs <- g:
			case <-ctx.Done():
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.launch = time.Since(start)
	ws.logf("scale: %d electors started in %s", groups*replicas, res.launch.Round(time.Millisecond))

	var last time.Time
	for _, g := range gs {
		_, at, err := ws.leases.wait(ctx, g.lease, 2*time.Minute, "holder", held)
		if err != nil {
			return nil, fmt.Errorf("scale: %w", err)
		}
		if at.After(last) {
			last = at
		}
	}
	res.allLeaders = last.Sub(start)
	ws.logf("scale: every group has a leader %s after the first start", res.allLeaders.Round(time.Millisecond))
	for _, g := range gs {
		if _, err := g.settle(ctx, time.Minute); err != nil {
			return nil, fmt.Errorf("scale: %w", err)
		}
	}
	ws.logf("scale: every standby follows its leader; measuring the steady state for %s", window)

	changesBefore := 0
	for _, g := range gs {
		changesBefore += ws.leases.get(g.lease).changes
	}
	before, err := requestCounts(ctx, ws.cs)
	if err != nil {
		return nil, err
	}
	windowStart := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	after, err := requestCounts(ctx, ws.cs)
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(windowStart)
	res.window = elapsed
	res.leaseRate = map[string]float64{}
	for k, v := range after {
		d := v - before[k]
		res.totalRate += d / elapsed.Seconds()
		if strings.HasSuffix(k, " leases") || strings.HasSuffix(k, " events") {
			res.leaseRate[k] = d / elapsed.Seconds()
		}
	}
	for _, g := range gs {
		res.changes += ws.leases.get(g.lease).changes
	}
	res.changes -= changesBefore
	var sum int64
	n := 0
	for _, g := range gs {
		for _, r := range g.members() {
			m, err := readMemory(r.proc.pid())
			if err != nil {
				continue
			}
			sum += m.rss
			n++
			res.rssMax = max(res.rssMax, m.rss)
		}
	}
	if n > 0 {
		res.rssMean = sum / int64(n)
	}
	ws.logf("scale: %.1f requests/s at the API server (%.1f for Leases), %d leader changes in the window",
		res.totalRate, sumRates(res.leaseRate), res.changes)

	for i := 0; i < failovers && i < len(gs); i++ {
		_, d, err := gs[i].failover(ctx, syscall.SIGTERM)
		if err != nil {
			return nil, fmt.Errorf("scale: failover of %s: %w", gs[i].lease, err)
		}
		res.failovers = append(res.failovers, d)
		ws.logf("scale: graceful failover of %s among %d groups: %s", gs[i].lease, groups, d.Round(time.Millisecond))
	}
	return res, nil
}

func sumRates(m map[string]float64) float64 {
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s
}

// memAvailable is the kernel's estimate of memory available for new processes.
func memAvailable() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(v)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no MemAvailable in /proc/meminfo")
}
