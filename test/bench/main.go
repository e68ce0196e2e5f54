// Command bench measures the project against its targets (GUIDE section 4) on the local control plane and
// prints one table: failover after SIGTERM and SIGKILL, direct handover, API load, leader changes per rolling
// update, footprint, admission cost and scale, each next
// to a baseline measured in the same run. make bench runs it and writes docs/benchmarks.md.
//
//	go run ./test/bench --bin bin --out docs/benchmarks.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(realMain()) }

func realMain() int {
	p := fullParams()
	binDir := flag.String("bin", "bin", "directory holding the elector and webhook binaries (make build puts them there)")
	out := flag.String("out", "", "Markdown file to write the results to (written only when every phase ran)")
	injectOut := flag.String("inject-out", "", "file for go test's raw output of pkg/inject's benchmarks, for benchstat (default: benchmarks-inject.txt beside --out)")
	only := flag.String("only", strings.Join(phases, ","), "comma-separated phases to run: "+strings.Join(phases, ", "))
	keep := flag.Bool("keep", false, "keep the work directory with every process's log")
	quick := flag.Bool("quick", false, "the quick test's tiny sizes (seconds instead of minutes; numbers not meaningful)")
	flag.IntVar(&p.gracefulTrials, "graceful-trials", p.gracefulTrials, "graceful failovers per implementation")
	flag.IntVar(&p.crashTrials, "crash-trials", p.crashTrials, "crash failovers per implementation")
	flag.IntVar(&p.crashGroups, "crash-groups", p.crashGroups, "crash groups per implementation running side by side")
	flag.DurationVar(&p.loadWindow, "load-window", p.loadWindow, "how long the API load is counted")
	flag.IntVar(&p.pods, "pods", p.pods, "pods created per series")
	flag.IntVar(&p.scaleGroups, "scale-groups", p.scaleGroups, "election groups in the scale benchmark")
	flag.IntVar(&p.scaleReplicas, "scale-replicas", p.scaleReplicas, "electors per group in the scale benchmark")
	flag.DurationVar(&p.profileTime, "profile-time", p.profileTime, "how long each kind of pod creation is profiled")
	flag.IntVar(&p.coldPods, "cold-pods", p.coldPods, "annotated pods created one at a time after the webhook restarts")
	flag.IntVar(&p.rolloutRuns, "rollout-runs", p.rolloutRuns, "simulated rolling updates per size, strategy, deletion order and mode")
	flag.DurationVar(&p.scaleWindow, "scale-window", p.scaleWindow, "how long the scale benchmark's steady state is measured")
	flag.Func("rollout-replicas", "comma-separated sizes of the real node's rolling updates (default 3,5,10)", func(v string) error {
		p.rolloutReplicas = nil
		if v == "" {
			return nil // none: the real node's app failure only
		}
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				return fmt.Errorf("%q: want replica counts of at least 2, such as 3,5,10", v)
			}
			p.rolloutReplicas = append(p.rolloutReplicas, n)
		}
		return nil
	})
	flag.IntVar(&p.appFailureTrials, "app-failure-trials", p.appFailureTrials, "app failures per mode on the real node")
	flag.Parse()
	if *quick {
		p = quickParams()
	}
	selected := map[string]bool{}
	for _, name := range strings.Split(*only, ",") {
		if !slices.Contains(phases, name) {
			fmt.Fprintf(os.Stderr, "--only: unknown phase %q; phases are %s\n", name, strings.Join(phases, ", "))
			return 2
		}
		selected[name] = true
	}

	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	// Ctrl-C or SIGTERM cancels the run: every wait returns, and the deferred cleanups end the processes and the
	// control plane. A second signal kills the benchmark at once (its children die with it, see procs.start).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()

	workDir, err := os.MkdirTemp("", "leader-election-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *keep {
		logf("work directory (kept): %s", workDir)
	} else {
		defer os.RemoveAll(workDir)
	}

	bins, err := findBinaries(ctx, *binDir, workDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	raw := *injectOut
	switch {
	case raw != "":
	case *out != "":
		raw = filepath.Join(filepath.Dir(*out), "benchmarks-inject.txt")
	default:
		raw = filepath.Join(workDir, "benchmarks-inject.txt")
	}

	res, err := run(ctx, p, bins, workDir, raw, selected, logf)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "interrupted; every process was stopped")
			return 130
		}
		fmt.Fprintf(os.Stderr, "benchmark failed: %v\n", err)
		return 1
	}
	fmt.Print(markdown(res.rows()))
	logf("done in %s", res.wall.Round(time.Second))
	if *out == "" {
		return 0
	}
	if !res.complete() {
		logf("not writing %s: only some phases ran", *out)
		return 0
	}
	old, _ := os.ReadFile(*out) // a first run has no earlier file and no notes to keep
	if err := os.WriteFile(*out, []byte(document(res, keptNotes(string(old)))), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logf("wrote %s and %s", *out, raw)
	return 0
}

// findBinaries checks for make build's binaries and builds the baseline beside the work files.
func findBinaries(ctx context.Context, binDir, workDir string) (binaries, error) {
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return binaries{}, err
	}
	bins := binaries{dir: abs, elector: filepath.Join(abs, "elector"), webhook: filepath.Join(abs, "webhook")}
	for _, b := range []string{bins.elector, bins.webhook} {
		if _, err := os.Stat(b); err != nil {
			return binaries{}, fmt.Errorf("%s missing: run make build first (or make bench, which does)", filepath.Base(b))
		}
	}
	if bins.baseline, err = buildBaseline(ctx, workDir, "baseline"); err != nil {
		return bins, err
	}
	bins.noop, err = buildBaseline(ctx, workDir, "noop")
	return bins, err
}
