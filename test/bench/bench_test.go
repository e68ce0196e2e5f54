package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leader-election/leader-election/test/controlplane"
)

// TestBenchQuick runs every phase of the benchmark with tiny sizes, so that make test keeps the code that
// produces docs/benchmarks.md working. It checks that each phase measured something sane, not the targets:
// a few trials on a busy test machine prove nothing about them.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes and about forty processes")
	}
	binDir := t.TempDir()
	for _, pkg := range []string{"./cmd/elector", "./cmd/webhook"} {
		if err := os.Rename(controlplane.Build(t, pkg), filepath.Join(binDir, filepath.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	workDir := t.TempDir()
	bins, err := findBinaries(t.Context(), binDir, workDir)
	if err != nil {
		t.Fatal(err)
	}
	selected := map[string]bool{}
	for _, name := range phases {
		selected[name] = true
	}
	p := quickParams()
	raw := filepath.Join(workDir, "inject.txt")
	res, err := run(t.Context(), p, bins, workDir, raw, selected, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if !res.complete() {
		t.Fatal("some phase left no results")
	}

	for _, name := range []string{"ours", "baseline"} {
		if got := len(res.graceful[name]); got != p.gracefulTrials {
			t.Errorf("%s: %d graceful failovers, want %d", name, got, p.gracefulTrials)
		}
		if got := len(res.crash[name]); got != p.crashTrials {
			t.Errorf("%s: %d crash failovers, want %d", name, got, p.crashTrials)
		}
		for _, d := range append(res.graceful[name], res.crash[name]...) {
			if d <= 0 || d > time.Minute {
				t.Errorf("%s: failover took %s", name, d)
			}
		}
		l := res.load[name]
		if writes(l.leader) == 0 {
			t.Errorf("%s: the leader made no write in %s", name, l.window)
		}
		if l.leaderMem.rss == 0 || len(l.standbys) != replicasPerGroup-1 {
			t.Errorf("%s: leader memory %d, %d standbys", name, l.leaderMem.rss, len(l.standbys))
		}
	}
	// The baseline's standbys poll every 2 to 4.4 seconds: a window without a single request would mean the
	// proxies count nothing.
	if n := total(sumOf(res.load["baseline"].standbys)); n == 0 {
		t.Errorf("the baseline's standbys made no request in %s; is the counting proxy in the path?", res.load["baseline"].window)
	}
	if m := res.micro["BenchmarkMutate"]; m == nil || len(m.nsPerOp) == 0 || m.nsPerOp[0] <= 0 || len(m.allocsPerOp) == 0 {
		t.Errorf("BenchmarkMutate results: %+v", m)
	}
	if data, err := os.ReadFile(raw); err != nil || !strings.Contains(string(data), "BenchmarkMutate") {
		t.Errorf("raw go test output not written: %v", err)
	}
	for _, c := range p.concurrency {
		for _, k := range kinds {
			run := res.admission.runs[runKey(k, c)]
			if run == nil || len(run.latencies) != p.pods*p.podRounds || run.perSecond() <= 0 {
				t.Errorf("pod creation %s: %+v", runKey(k, c), run)
				continue
			}
			if k.webhookName() != "" && run.call.count == 0 {
				t.Errorf("pod creation %s: kube-apiserver never called the %s", runKey(k, c), k.process())
			}
		}
	}
	for _, k := range kinds {
		pr := res.admission.profiles[k]
		if pr == nil || pr.pods == 0 || len(pr.apiServer) == 0 {
			t.Errorf("CPU profile %s: %+v", k, pr)
			continue
		}
		var sampled time.Duration
		for _, b := range pr.apiServer {
			sampled += b.cpu
		}
		if sampled <= 0 {
			t.Errorf("CPU profile %s: kube-apiserver's profile holds no samples", k)
		}
		if k == ourWebhook && len(pr.webhook) == 0 {
			t.Errorf("CPU profile %s: no profile of the webhook", k)
		}
	}
	if cold := res.admission.cold; cold == nil || len(cold.latencies) != p.coldPods || cold.ready <= 0 {
		t.Errorf("cold start: %+v", cold)
	}
	if m := res.micro["BenchmarkHandle/"+handlerPod]; m == nil || len(m.allocsPerOp) == 0 {
		t.Errorf("BenchmarkHandle results: %+v", m)
	}
	if res.admission.webhookMem.rss == 0 {
		t.Error("the webhook's memory was not read")
	}
	s := res.scale
	if s.allLeaders <= 0 || len(s.failovers) != p.scaleFailovers || sumRates(s.leaseRate) <= 0 {
		t.Errorf("scale: every leader after %s, failovers %v, Lease requests/s %v", s.allLeaders, s.failovers, s.leaseRate)
	}

	rows := res.rows()
	table := markdown(rows)
	if len(rows) < 25 || strings.Count(table, "\n") != len(rows)+2 {
		t.Errorf("the table has %d rows:\n%s", len(rows), table)
	}
	doc := document(res, "kept note")
	for _, want := range []string{"# Benchmarks", "**Machine:**", "`make bench`", table, notesBegin + "\nkept note\n" + notesEnd} {
		if !strings.Contains(doc, want) {
			t.Errorf("the document lacks %q", want)
		}
	}
	if keptNotes(doc) != "kept note" {
		t.Errorf("notes not carried over: %q", keptNotes(doc))
	}
	t.Logf("\n%s", table)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct{ method, url, want string }{
		{"GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/web", "get leases"},
		{"GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases?fieldSelector=metadata.name%3Dweb&watch=true", "watch leases"},
		{"GET", "/apis/coordination.k8s.io/v1/watch/namespaces/ns/leases/web", "watch leases"},
		{"GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases", "list leases"},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/web", "update leases"},
		{"POST", "/apis/coordination.k8s.io/v1/namespaces/ns/leases", "create leases"},
		{"POST", "/apis/events.k8s.io/v1/namespaces/ns/events", "create events"},
		{"GET", "/api/v1/namespaces/ns/pods/p", "get pods"},
		{"GET", "/version", "get /version"},
	} {
		req, err := http.NewRequest(tc.method, "http://x"+tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := classify(req.Method, req.URL); got != tc.want {
			t.Errorf("%s %s = %q, want %q", tc.method, tc.url, got, tc.want)
		}
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 20; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 10 * time.Millisecond}, {0.9, 18 * time.Millisecond}, {0.99, 20 * time.Millisecond}, {1, 20 * time.Millisecond}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("p%.0f of 1..20 ms = %s, want %s", tc.p*100, got, tc.want)
		}
	}
}
