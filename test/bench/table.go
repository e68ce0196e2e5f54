package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// row is one line of the results table. met is nil for rows without a target.
type row struct {
	what, baseline, ours, ratio, target string
	met                                 *bool
}

func verdict(ok bool) *bool { return &ok }

// rows turns the results into the table, section by section; a phase that did not run adds no rows.
func (r *results) rows() []row {
	var rows []row
	rows = append(rows, r.failoverRows()...)
	rows = append(rows, r.loadRows()...)
	rows = append(rows, r.footprintRows()...)
	rows = append(rows, r.admissionRows()...)
	rows = append(rows, r.scaleRows()...)
	return rows
}

func (r *results) failoverRows() []row {
	var rows []row
	if r.graceful != nil {
		rows = append(rows, percentileRows("graceful failover (SIGTERM)", r.graceful, r.params.failoverTiming,
			func(q float64, o, b time.Duration) (string, *bool) {
				switch q {
				case 0.5:
					return "≤ 0.1 s and ≤ 0.1× baseline", verdict(o <= 100*time.Millisecond && o*10 <= b)
				case 0.99:
					return "≤ 0.5 s", verdict(o <= 500*time.Millisecond)
				}
				return "", nil
			})...)
	}
	if r.crash != nil {
		t := r.params.crashTiming
		rows = append(rows, percentileRows("crash failover (SIGKILL)", r.crash, t,
			func(q float64, o, _ time.Duration) (string, *bool) {
				if q != 0.99 {
					return "", nil
				}
				limit := t.lease + 500*time.Millisecond
				return "≤ lease + 0.5 s = " + seconds(limit), verdict(o <= limit)
			})...)
	}
	return rows
}

// percentileRows is one row per quantile (p50, p90, p99) of failover times, ours against the baseline; judge
// gives a quantile's target and verdict ("" and nil where it has none).
func percentileRows(what string, samples map[string][]time.Duration, t timing,
	judge func(q float64, ours, baseline time.Duration) (string, *bool)) []row {
	var rows []row
	for _, q := range []float64{0.5, 0.9, 0.99} {
		b, o := percentile(samples["baseline"], q), percentile(samples["ours"], q)
		x := row{what: fmt.Sprintf("%s p%.0f, %d trials, %s", what, q*100, len(samples["ours"]), t),
			baseline: seconds(b), ours: seconds(o), ratio: ratio(o.Seconds(), b.Seconds())}
		x.target, x.met = judge(q, o, b)
		rows = append(rows, x)
	}
	return rows
}

func (r *results) loadRows() []row {
	if r.load == nil {
		return nil
	}
	b, o := r.load["baseline"], r.load["ours"]
	win := fmt.Sprintf("%s window", o.window.Round(time.Second))
	perStandby := func(l *loadResult) float64 {
		return l.perMinute(total(sumOf(l.standbys))) / float64(max(1, len(l.standbys)))
	}
	oursStandby := sumOf(o.standbys)
	periodic := total(oursStandby) - verbs(oursStandby)["watch"]
	rows := []row{{
		what:     "API load: requests/min of each standby (" + win + ")",
		baseline: perMin(perStandby(b)), ours: perMin(perStandby(o)), ratio: ratio(perStandby(o), perStandby(b)),
		target: "0 periodic (a watch only)", met: verdict(periodic == 0),
	}}
	renewals := o.window.Seconds() / r.params.loadTiming.retry.Seconds()
	rows = append(rows, row{
		what:     fmt.Sprintf("API load: writes/min of the leader (renew every %s)", r.params.loadTiming.retry),
		baseline: perMin(b.perMinute(writes(b.leader))), ours: perMin(o.perMinute(writes(o.leader))),
		ratio:  ratio(float64(writes(o.leader)), float64(writes(b.leader))),
		target: fmt.Sprintf("≤ 1 per renewal = %s", perMin(60/r.params.loadTiming.retry.Seconds())),
		met:    verdict(float64(writes(o.leader)) <= renewals+1),
	})
	bg, og := verbs(b.group()), verbs(o.group())
	var names []string
	for _, m := range []map[string]int{bg, og} {
		for v := range m {
			if !slices.Contains(names, v) {
				names = append(names, v)
			}
		}
	}
	slices.Sort(names)
	for _, v := range names {
		rows = append(rows, row{
			what:     fmt.Sprintf("API load: %s requests/min, whole group of %d", v, replicasPerGroup),
			baseline: perMin(b.perMinute(bg[v])), ours: perMin(o.perMinute(og[v])), ratio: ratio(float64(og[v]), float64(bg[v])),
		})
	}
	rows = append(rows, row{
		what:     fmt.Sprintf("API load: all requests/min, whole group of %d", replicasPerGroup),
		baseline: perMin(b.perMinute(total(b.group()))), ours: perMin(o.perMinute(total(o.group()))),
		ratio: ratio(float64(total(o.group())), float64(total(b.group()))),
	})
	return rows
}

func (r *results) footprintRows() []row {
	var rows []row
	const mib = 1 << 20
	if r.load != nil {
		b, o := r.load["baseline"], r.load["ours"]
		for _, m := range []struct {
			what string
			b, o int64
		}{
			{"RSS of the leader, steady (VmRSS at the end)", b.leaderMem.rss, o.leaderMem.rss},
			{"RSS of the leader, peak (VmHWM)", b.leaderMem.peak, o.leaderMem.peak},
			{"RSS of a standby, steady (largest VmRSS)", b.standbyMem.rss, o.standbyMem.rss},
			{"RSS of a standby, peak (largest VmHWM)", b.standbyMem.peak, o.standbyMem.peak},
		} {
			rows = append(rows, row{what: "elector " + m.what, baseline: mibs(m.b), ours: mibs(m.o),
				ratio: ratio(float64(m.o), float64(m.b)), target: "≤ 20 MiB", met: verdict(m.o <= 20*mib)})
		}
	}
	b, o := r.binSize["baseline"], r.binSize["ours"]
	rows = append(rows, row{what: "elector binary size (static, -trimpath -s -w)", baseline: fmt.Sprintf("%.1f MB", float64(b)/1e6),
		ours: fmt.Sprintf("%.1f MB", float64(o)/1e6), ratio: ratio(float64(o), float64(b)), target: "≤ 25 MB", met: verdict(o <= 25e6)})
	if r.admission != nil {
		m := r.admission.webhookMem
		rows = append(rows, row{what: "webhook RSS while creating pods (largest VmRSS / VmHWM)", baseline: "–",
			ours: mibs(m.rss) + " / " + mibs(m.peak), ratio: "–", target: "–"})
	}
	return rows
}

func (r *results) admissionRows() []row {
	var rows []row
	if r.micro != nil {
		m, d := r.micro["BenchmarkMutate"], r.micro["BenchmarkDeepCopy"]
		ns, bns := median(m.nsPerOp), median(d.nsPerOp)
		allocs, ballocs := median(m.allocsPerOp), median(d.allocsPerOp)
		n := len(m.nsPerOp)
		rows = append(rows,
			row{what: fmt.Sprintf("mutation in process, time per pod (median of %d; baseline: the pod's DeepCopy)", n),
				baseline: micros(bns), ours: micros(ns), ratio: ratio(ns, bns), target: "≤ 50 µs", met: verdict(ns <= 50e3)},
			row{what: "mutation in process, allocations per pod (baseline: DeepCopy)",
				baseline: fmt.Sprintf("%.0f", ballocs), ours: fmt.Sprintf("%.0f", allocs), ratio: ratio(allocs, ballocs),
				target: "≤ 150", met: verdict(allocs <= 150)})
		if h := r.micro["BenchmarkHandle/"+handlerPod]; h != nil {
			ns, allocs := median(h.nsPerOp), median(h.allocsPerOp)
			rows = append(rows,
				row{what: fmt.Sprintf("admission handler in process (decode + mutate + patch), %s, time per pod (median of %d)", handlerPod, len(h.nsPerOp)),
					baseline: "–", ours: micros(ns), ratio: "–", target: "≤ 20 µs", met: verdict(ns <= 20e3)},
				row{what: fmt.Sprintf("admission handler in process, %s, allocations per pod", handlerPod),
					baseline: "–", ours: fmt.Sprintf("%.0f", allocs), ratio: "–", target: "≤ 120", met: verdict(allocs <= 120)})
		}
		for _, x := range []struct{ name, what string }{
			{"BenchmarkHandle/replica-pod", "admission handler in process, replica-pod (as kube-apiserver sends it)"},
			{"BenchmarkServeHTTP/" + handlerPod, "whole admission request in process (AdmissionReview in and out, no TLS), " + handlerPod},
			{"BenchmarkServeHTTP/replica-pod", "whole admission request in process, replica-pod"},
		} {
			if h := r.micro[x.name]; h != nil {
				rows = append(rows, row{what: x.what + ", time / allocations per pod", baseline: "–",
					ours: fmt.Sprintf("%s / %.0f", micros(median(h.nsPerOp)), median(h.allocsPerOp)), ratio: "–", target: "–"})
			}
		}
	}
	if a := r.admission; a != nil {
		pods := r.params.pods * r.params.podRounds
		for _, c := range r.params.concurrency {
			none, noop, ours := a.runs[runKey(noWebhook, c)], a.runs[runKey(noopWebhook, c)], a.runs[runKey(ourWebhook, c)]
			label := fmt.Sprintf("pod create, one at a time, %d pods per kind", pods)
			if c > 1 {
				label = fmt.Sprintf("pod create, %d concurrent, %d pods per kind", c, pods)
			}
			for _, q := range []float64{0.5, 0.99} {
				n, b, o := percentile(none.latencies, q), percentile(noop.latencies, q), percentile(ours.latencies, q)
				rows = append(rows, row{
					what:     fmt.Sprintf("%s, p%.0f, latency added to %s without a webhook (baseline: the no-op webhook; ratio of the added latencies)", label, q*100, millis(n)),
					baseline: fmt.Sprintf("%s (+%.2f ms)", millis(b), float64(b-n)/1e6),
					ours:     fmt.Sprintf("%s (+%.2f ms)", millis(o), float64(o-n)/1e6),
					ratio:    ratio(float64(o-n), float64(b-n)),
					target:   "added ≤ 1.2× the no-op's", met: verdict(o-n <= (b-n)*6/5),
				})
			}
			x := row{what: fmt.Sprintf("%s, creates/s (%.0f/s without a webhook; baseline: the no-op webhook)", label, none.perSecond()),
				baseline: fmt.Sprintf("%.0f/s", noop.perSecond()), ours: fmt.Sprintf("%.0f/s", ours.perSecond()), ratio: ratio(ours.perSecond(), noop.perSecond())}
			if c == slices.Max(r.params.concurrency) {
				x.target, x.met = fmt.Sprintf("≥ 300/s on %d cores", r.machine.cores), verdict(ours.perSecond() >= 300)
			}
			rows = append(rows, x)
			b, o := noop.cpuPerPod(noopWebhook.process()), ours.cpuPerPod(ourWebhook.process())
			rows = append(rows, row{what: fmt.Sprintf("%s, CPU per admitted pod of the webhook process (baseline: the no-op's)", label),
				baseline: millis(b), ours: millis(o), ratio: ratio(o.Seconds(), b.Seconds()), target: "–"})
			n, b, o := none.cpuPerPod("kube-apiserver"), noop.cpuPerPod("kube-apiserver"), ours.cpuPerPod("kube-apiserver")
			rows = append(rows, row{what: fmt.Sprintf("%s, CPU per pod of kube-apiserver (%s without a webhook; baseline: with the no-op)", label, millis(n)),
				baseline: millis(b), ours: millis(o), ratio: ratio(o.Seconds(), b.Seconds()), target: "–"})
			rows = append(rows, policyModeRows(label, none, noop, a.runs[runKey(policyMode, c)])...)
		}
		if cold := a.cold; cold != nil && len(cold.latencies) > 0 {
			last := len(cold.latencies)
			rows = append(rows, row{what: fmt.Sprintf("first annotated pod after the webhook restarts, create latency (baseline: pod %d after it)", last),
				baseline: millis(cold.latencies[last-1]), ours: millis(cold.latencies[0]),
				ratio: ratio(cold.latencies[0].Seconds(), cold.latencies[last-1].Seconds()), target: "–"})
		}
	}
	return rows
}

// policyModeRows are admission mode policy's rows at one concurrency: the same pods injected by the API server's
// MutatingAdmissionPolicies, next to no webhook and the no-op webhook (the baseline; the issue expects policy mode
// close to no webhook, so the added latency is what to read).
func policyModeRows(label string, none, noop, policy *createRun) []row {
	if policy == nil {
		return nil
	}
	var rows []row
	for _, q := range []float64{0.5, 0.99} {
		n, b, o := percentile(none.latencies, q), percentile(noop.latencies, q), percentile(policy.latencies, q)
		rows = append(rows, row{
			what:     fmt.Sprintf("%s, p%.0f, admission mode policy: latency added to %s without a webhook (baseline: the no-op webhook; ratio of the added latencies)", label, q*100, millis(n)),
			baseline: fmt.Sprintf("%s (+%.2f ms)", millis(b), float64(b-n)/1e6),
			ours:     fmt.Sprintf("%s (+%.2f ms)", millis(o), float64(o-n)/1e6),
			ratio:    ratio(float64(o-n), float64(b-n)), target: "–",
		})
	}
	rows = append(rows, row{what: fmt.Sprintf("%s, admission mode policy: creates/s (%.0f/s without a webhook; baseline: the no-op webhook)", label, none.perSecond()),
		baseline: fmt.Sprintf("%.0f/s", noop.perSecond()), ours: fmt.Sprintf("%.0f/s", policy.perSecond()), ratio: ratio(policy.perSecond(), noop.perSecond()), target: "–"})
	n, b, o := none.cpuPerPod("kube-apiserver"), noop.cpuPerPod("kube-apiserver"), policy.cpuPerPod("kube-apiserver")
	rows = append(rows, row{what: fmt.Sprintf("%s, admission mode policy: CPU per pod of kube-apiserver (%s without a webhook; baseline: with the no-op)", label, millis(n)),
		baseline: millis(b), ours: millis(o), ratio: ratio(o.Seconds(), b.Seconds()), target: "–"})
	// The manager still binds each stored pod's account (PodBinder) and runs the label controller.
	b, o = noop.cpuPerPod(noopWebhook.process()), policy.cpuPerPod(ourWebhook.process())
	rows = append(rows, row{what: fmt.Sprintf("%s, admission mode policy: CPU per pod of the manager (binding the account of each stored pod; baseline: the no-op webhook's)", label),
		baseline: millis(b), ours: millis(o), ratio: ratio(o.Seconds(), b.Seconds()), target: "–"})
	return rows
}

// handlerPod is the pod of BenchmarkHandle the handler's target is judged on: the bare pod a client sends, the
// size the target was set for (pkg/webhook/bench_test.go).
const handlerPod = "bare-pod"

func (r *results) scaleRows() []row {
	s := r.scale
	if s == nil {
		return nil
	}
	what := fmt.Sprintf("scale, %d groups × %d electors (%s)", s.groups, s.replicas, s.timing)
	expected := float64(s.groups) / s.timing.retry.Seconds()
	return []row{
		{what: what + ": time until every group has a leader", baseline: "–", ours: seconds(s.allLeaders), ratio: "–", target: "–"},
		{what: what + ": Lease requests/s in steady state", baseline: "–", ours: fmt.Sprintf("%.1f/s", sumRates(s.leaseRate)), ratio: "–",
			target: fmt.Sprintf("≤ 1 write per leader per renewal = %.0f/s", expected), met: verdict(sumRates(s.leaseRate) <= expected*1.05)},
		{what: what + ": all API requests/s in steady state", baseline: "–", ours: fmt.Sprintf("%.1f/s", s.totalRate), ratio: "–", target: "–"},
		{what: what + ": leader changes in steady state", baseline: "–", ours: fmt.Sprint(s.changes), ratio: "–", target: "0", met: verdict(s.changes == 0)},
		{what: fmt.Sprintf("%s: graceful failover of one group (max of %d)", what, len(s.failovers)), baseline: "–",
			ours: seconds(percentile(s.failovers, 1)), ratio: "–", target: "≤ 0.5 s", met: verdict(percentile(s.failovers, 1) <= 500*time.Millisecond)},
	}
}

// markdown renders rows as one table.
func markdown(rows []row) string {
	var b strings.Builder
	b.WriteString("| what | baseline | this project | ratio (ours ÷ baseline) | target | met |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, x := range rows {
		met := "–"
		if x.met != nil {
			met = "yes"
			if !*x.met {
				met = "**no**"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", x.what, x.baseline, x.ours, x.ratio, or(x.target, "–"), met)
	}
	return b.String()
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func millis(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func micros(ns float64) string { return fmt.Sprintf("%.1f µs", ns/1e3) }

func mibs(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func perMin(v float64) string { return fmt.Sprintf("%.1f/min", v) }

func ratio(ours, baseline float64) string {
	switch {
	case baseline == 0 && ours == 0:
		return "–"
	case baseline == 0:
		return "∞"
	}
	return fmt.Sprintf("%.3g×", ours/baseline)
}
