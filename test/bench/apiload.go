package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// loadResult is what one implementation's group of three asked of the API server during the window, and the
// footprint of its processes at the end of it.
type loadResult struct {
	window time.Duration
	// leader and standbys count requests by "<verb> <resource>".
	leader   map[string]int
	standbys []map[string]int
	// leaderMem and standbyMem are the leader's memory and the largest standby's.
	leaderMem, standbyMem memory
	// changes is how many times the Lease changed hands during the window (0 expected).
	changes int
	// renewInterval is the interval the leader says it renews at (its first log line), 0 when it does not say.
	renewInterval time.Duration
}

// perMinute scales a count over the window to one minute.
func (r *loadResult) perMinute(n int) float64 { return float64(n) / r.window.Minutes() }

// group sums the counts of every replica.
func (r *loadResult) group() map[string]int {
	return sumOf(append([]map[string]int{r.leader}, r.standbys...))
}

// verbs counts a map of "<verb> <resource>" by verb.
func verbs(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		verb, _, _ := strings.Cut(k, " ")
		out[verb] += v
	}
	return out
}

// renewAtRetryName is the API load's group of our electors with --renew-interval equal to the retry period.
const renewAtRetryName = "renew-at-retry"

// electionWrites counts the writes to the election's own Lease (the proxy counts other Leases, such as candidates,
// apart): the leader's renewals.
func electionWrites(m map[string]int) int {
	return m["create leases"] + m["update leases"] + m["patch leases"]
}

// total counts every request.
func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// describe lists the counts per minute, largest first: "12 update leases, 3 get leases".
func describe(m map[string]int, window time.Duration) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%.1f %s", float64(m[k])/window.Minutes(), k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// runAPILoad runs one group of three replicas per implementation, side by side, each replica behind its own
// counting proxy; once every group has settled it counts their requests for window, then reads the memory of
// every process.
//
// Three groups run: our elector as shipped (its default renew interval), our elector renewing every retry period
// (--renew-interval equal to it, as it did before the interval was its own setting) and the baseline.
func runAPILoad(ctx context.Context, ws *workspace, window time.Duration, t timing) (map[string]*loadResult, error) {
	proxies := map[string]*countingProxy{}
	var groups []*group
	defer func() {
		for _, g := range groups {
			g.stop()
		}
		for _, p := range proxies {
			p.close()
		}
	}()
	for _, v := range []struct {
		name string
		im   *impl
		env  []string
	}{{oursName, ws.ours, nil}, {renewAtRetryName, ws.ours, []string{"ELECTOR_RENEW_INTERVAL=" + t.retry.String()}}, {baselineName, ws.base, nil}} {
		g := ws.newGroup(v.im, "load-"+v.name, t)
		g.env = v.env
		g.kubeconfigFor = func(id string) (string, error) {
			p, err := startCountingProxy(v.im.rest, g.lease)
			if err != nil {
				return "", err
			}
			proxies[id] = p
			return p.writeKubeconfig(ws.dir, id)
		}
		groups = append(groups, g)
		for range replicasPerGroup {
			if _, err := g.add(ctx); err != nil {
				return nil, err
			}
		}
	}
	for _, g := range groups {
		if _, err := g.settle(ctx, t.lease+20*time.Second); err != nil {
			return nil, err
		}
	}
	changesBefore := map[string]int{}
	for _, g := range groups {
		changesBefore[g.lease] = ws.leases.get(g.lease).changes
	}
	for _, p := range proxies {
		p.take()
	}
	ws.logf("API load: counting the requests of both groups for %s", window)
	start := time.Now()
	for time.Since(start) < window {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(30*time.Second, window-time.Since(start))):
		}
		if left := window - time.Since(start); left > time.Second {
			ws.logf("API load: %s left", left.Round(time.Second))
		}
	}
	elapsed := time.Since(start)

	out := map[string]*loadResult{}
	for _, g := range groups {
		st := ws.leases.get(g.lease)
		res := &loadResult{window: elapsed, changes: st.changes - changesBefore[g.lease]}
		for _, r := range g.members() {
			counts := proxies[r.id].take()
			mem, err := readMemory(r.proc.pid())
			if err != nil {
				return nil, fmt.Errorf("memory of %s: %w", r.id, err)
			}
			if r.id == st.holder {
				res.leader, res.leaderMem = counts, mem
				res.renewInterval = renewIntervalIn(r.proc.logPath)
				continue
			}
			res.standbys = append(res.standbys, counts)
			if mem.rss > res.standbyMem.rss {
				res.standbyMem.rss = mem.rss
			}
			if mem.peak > res.standbyMem.peak {
				res.standbyMem.peak = mem.peak
			}
		}
		if res.leader == nil {
			return nil, fmt.Errorf("lease %s: holder %q is none of the group's replicas at the end of the window", g.lease, st.holder)
		}
		name := strings.TrimPrefix(g.lease, "load-")
		out[name] = res
		ws.logf("API load %-14s leader: %s; standbys: %s", g.impl.name, describe(res.leader, elapsed), describe(sumOf(res.standbys), elapsed))
	}
	return out, nil
}

func sumOf(ms []map[string]int) map[string]int {
	sum := map[string]int{}
	for _, m := range ms {
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum
}

// renewIntervalIn reads the renew interval our elector logs when it starts ("taking part in the election ...
// renewInterval=4s"); 0 when the log does not say, as before the interval was a setting of its own (the leader
// then renews every retry period) and for the baseline.
func renewIntervalIn(logPath string) time.Duration {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	for _, field := range strings.Fields(string(data)) {
		if v, ok := strings.CutPrefix(field, "renewInterval="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return 0
			}
			return d
		}
	}
	return 0
}
