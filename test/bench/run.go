package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/leader-election/leader-election/test/controlplane"
)

// phases are the benchmark's parts, in the order they run.
// "node" brings up the real node (test/node; root), last, after every other phase has left the machine.
var phases = []string{"inject", "failover", "load", "rollout", "scale", "admission", "node"}

// binaries are the programs under test.
type binaries struct {
	dir, elector, webhook, baseline string
	// noop is test/bench/noop, the no-op webhook the admission rows compare against.
	noop string
}

// results gathers what every phase measured; a phase that did not run leaves its fields nil.
type results struct {
	params    params
	machine   machine
	graceful  *graceful
	crash     map[string][]time.Duration
	load      map[string]*loadResult
	rollouts  *simulatedRollouts
	binSize   map[string]int64
	micro     map[string]*microResult
	admission *admissionResult
	scale     *scaleResult
	node      *nodeResult
	wall      time.Duration
}

// complete reports whether every phase ran; the real node's rows are added when that phase ran too.
func (r *results) complete() bool {
	return r.micro != nil && r.graceful != nil && r.crash != nil && r.load != nil && r.rollouts != nil && r.scale != nil && r.admission != nil
}

// run runs the selected phases. The CPU-bound microbenchmark goes first, on a quiet machine; the election phases
// share one control plane; the pod creation brings up its own cluster last.
func run(ctx context.Context, p params, bins binaries, workDir, injectRaw string, selected map[string]bool, logf func(string, ...any)) (*results, error) {
	started := time.Now()
	// envtest logs through controller-runtime's logger and complains, with a stack trace, when none is set.
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	res := &results{params: p, binSize: map[string]int64{}}
	var err error
	if res.machine, err = describeMachine(); err != nil {
		return nil, err
	}
	for name, path := range map[string]string{"ours": bins.elector, "baseline": bins.baseline} {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		res.binSize[name] = st.Size()
	}

	if selected["inject"] {
		logf("pkg/inject benchmarks: go test -bench . -benchmem %s", strings.Join(p.injectArgs, " "))
		if res.micro, err = runInjectBench(ctx, p.injectArgs, injectRaw); err != nil {
			return nil, err
		}
	}

	if selected["failover"] || selected["load"] || selected["rollout"] || selected["scale"] {
		dir := filepath.Join(workDir, "elections")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		ws, err := startWorkspace(ctx, dir, bins, newProcs(), logf)
		if err != nil {
			return nil, err
		}
		defer ws.stop()
		if res.machine.apiServer, err = serverVersion(ws); err != nil {
			return nil, err
		}
		if selected["failover"] {
			logf("graceful failover: %d trials each, %s, ours, release-and-race and the baseline in turn", p.gracefulTrials, p.failoverTiming)
			if res.graceful, err = runGraceful(ctx, ws, p.gracefulTrials, p.failoverTiming); err != nil {
				return nil, err
			}
			logf("crash failover: %d trials each, %s, in %d groups per implementation side by side", p.crashTrials, p.crashTiming, p.crashGroups)
			if res.crash, err = runCrash(ctx, ws, p.crashTrials, p.crashGroups, p.crashTiming); err != nil {
				return nil, err
			}
		}
		if selected["load"] {
			if res.load, err = runAPILoad(ctx, ws, p.loadWindow, p.loadTiming); err != nil {
				return nil, err
			}
		}
		if selected["rollout"] {
			logf("rollouts: N = %s, %d per case, %s, handover and release-and-race", joinInts(p.rolloutSizes), p.rolloutRuns, p.rolloutTiming)
			if res.rollouts, err = runRollouts(ctx, ws, p); err != nil {
				return nil, err
			}
		}
		if selected["scale"] {
			if res.scale, err = runScale(ctx, ws, p.scaleGroups, p.scaleReplicas, p.scaleTiming, p.scaleWindow, p.scaleFailovers); err != nil {
				return nil, err
			}
		}
		ws.stop()
	}

	if selected["admission"] {
		dir := filepath.Join(workDir, "cluster")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if res.admission, err = runAdmission(ctx, bins, dir, p, logf); err != nil {
			return nil, err
		}
	}
	if selected["node"] {
		dir := filepath.Join(workDir, "node")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if res.node, err = runRealNode(ctx, p, bins, dir, logf); err != nil {
			return nil, err
		}
	}
	res.wall = time.Since(started)
	return res, nil
}

// buildBaseline compiles a baseline program of test/bench (baseline, the client-go elector; noop, the no-op
// webhook) with the Makefile's flags, so that binary sizes compare.
func buildBaseline(ctx context.Context, dir, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./test/bench/"+name)
	cmd.Dir = controlplane.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building test/bench/%s: %w\n%s", name, err, msg)
	}
	return out, nil
}
