package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/leader-election/leader-election/test/controlplane"
)

// microResult is one Go benchmark's runs.
type microResult struct {
	nsPerOp, allocsPerOp, bytesPerOp []float64
}

// runInjectBench runs pkg/inject's benchmarks with go test (BenchmarkMutate, and BenchmarkDeepCopy as the
// baseline in the same run) and pkg/webhook's (BenchmarkHandle, BenchmarkServeHTTP), writes go test's output unchanged to rawPath so that benchstat can compare runs,
// and returns the parsed results by benchmark name (without the -GOMAXPROCS suffix).
func runInjectBench(ctx context.Context, extraArgs []string, rawPath string) (map[string]*microResult, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem"}, extraArgs...)
	args = append(args, "./pkg/inject", "./pkg/webhook")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = controlplane.RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	if err := os.WriteFile(rawPath, out, 0o644); err != nil {
		return nil, err
	}
	results := parseGoBench(out)
	for _, name := range []string{"BenchmarkMutate", "BenchmarkDeepCopy", "BenchmarkHandle/" + handlerPod} {
		if results[name] == nil {
			return nil, fmt.Errorf("go test printed no %s result:\n%s", name, out)
		}
	}
	return results, nil
}

// parseGoBench reads go test -bench -benchmem output lines such as
// "BenchmarkMutate-2   100000   11913 ns/op   7079 B/op   76 allocs/op".
func parseGoBench(out []byte) map[string]*microResult {
	results := map[string]*microResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := fields[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		r := results[name]
		if r == nil {
			r = &microResult{}
			results[name] = r
		}
		// After the name and the iteration count come value-unit pairs.
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "ns/op":
				r.nsPerOp = append(r.nsPerOp, v)
			case "allocs/op":
				r.allocsPerOp = append(r.allocsPerOp, v)
			case "B/op":
				r.bytesPerOp = append(r.bytesPerOp, v)
			}
		}
	}
	return results
}
