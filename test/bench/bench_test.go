package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

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
		// The real node's phase is test/e2e's ground (one node per machine, root): make test runs it there.
		selected[name] = name != "node"
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

	for _, name := range []string{oursName, raceName, baselineName} {
		if got := len(res.graceful.confirmed[name]); got != p.gracefulTrials {
			t.Errorf("%s: %d graceful failovers, want %d", name, got, p.gracefulTrials)
		}
		for i, d := range res.graceful.confirmed[name] {
			if w := res.graceful.written[name][i]; d <= 0 || d > time.Minute || w <= 0 || w > d {
				t.Errorf("%s: graceful failover %d: Lease written over after %s, successor acting after %s", name, i, w, d)
			}
		}
	}
	for _, name := range []string{oursName, baselineName} {
		if got := len(res.crash[name]); got != p.crashTrials {
			t.Errorf("%s: %d crash failovers, want %d", name, got, p.crashTrials)
		}
		for _, d := range res.crash[name] {
			if d <= 0 || d > time.Minute {
				t.Errorf("%s: crash failover took %s", name, d)
			}
		}
	}
	for _, name := range []string{oursName, renewAtRetryName, baselineName} {
		l := res.load[name]
		if l == nil {
			t.Errorf("no API load measured for %s", name)
			continue
		}
		if electionWrites(l.leader) == 0 {
			t.Errorf("%s: the leader made no write to its Lease in %s: %v", name, l.window, l.leader)
		}
		if l.leaderMem.rss == 0 || len(l.standbys) != replicasPerGroup-1 {
			t.Errorf("%s: leader memory %d, %d standbys", name, l.leaderMem.rss, len(l.standbys))
		}
	}
	// Every rollout ends with a leader of the new revision and every old replica gone, so the leader moved at
	// least once in each; more than one move per old replica would mean the Lease watch counts wrong.
	for _, n := range p.rolloutSizes {
		for _, s := range p.rolloutStrategies {
			for _, random := range p.rolloutRandom {
				for _, m := range leaveModes {
					c := rolloutCase{n: n, strategy: s.name, random: random, mode: m.name}
					if got := len(res.rollouts.trials[c]); got != p.rolloutRuns {
						t.Errorf("rollout %+v: %d rollouts, want %d", c, got, p.rolloutRuns)
					}
					for _, tr := range res.rollouts.trials[c] {
						if tr.changes < 1 || tr.changes > n || tr.transitions < tr.changes || tr.took <= 0 {
							t.Errorf("rollout %+v: %+v", c, tr)
						}
					}
				}
			}
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
	if len(rows) < 30 || strings.Count(table, "\n") != len(rows)+2 {
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

func TestObjectNameAndRenewInterval(t *testing.T) {
	for path, want := range map[string]string{
		"/apis/coordination.k8s.io/v1/namespaces/ns/leases/web":       "web",
		"/apis/coordination.k8s.io/v1/watch/namespaces/ns/leases/web": "web",
		"/apis/coordination.k8s.io/v1/namespaces/ns/leases":           "",
		"/api/v1/namespaces/ns":                                       "",
	} {
		if got := objectName(&url.URL{Path: path}); got != want {
			t.Errorf("objectName(%s) = %q, want %q", path, got, want)
		}
	}
	log := filepath.Join(t.TempDir(), "elector.log")
	line := `time=2026-11-24T08:09:44.325Z level=INFO msg="taking part in the election" retryPeriod=2s renewInterval=4s handover=true` + "\n"
	if err := os.WriteFile(log, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := renewIntervalIn(log); got != 4*time.Second {
		t.Errorf("renew interval %s, want 4s", got)
	}
	if err := os.WriteFile(log, []byte(`msg="taking part in the election" retryPeriod=2s`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := renewIntervalIn(log); got != 0 {
		t.Errorf("renew interval %s from a log without one, want 0", got)
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

// TestLeaseWatchCountsLeaderChangesAndHandovers feeds the Lease watch the states of a release, a handover and its
// confirmation, and a holder taking the Lease back after its own release: the rollout rows count on these figures.
func TestLeaseWatchCountsLeaderChangesAndHandovers(t *testing.T) {
	lw := &leaseWatch{leases: map[string]leaseState{}, changed: make(chan struct{})}
	token := int32(0)
	state := func(holder, from string) *coordinationv1.Lease {
		token++
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{}},
			Spec: coordinationv1.LeaseSpec{LeaseTransitions: ptr.To(token)}}
		if holder != "" {
			l.Spec.HolderIdentity = ptr.To(holder)
		}
		if from != "" {
			l.Annotations[handoverFromAnnotation] = from
		}
		return l
	}
	for _, step := range []struct {
		holder, from       string
		tenures, handovers int
		confirmed          bool
	}{
		{"a", "", 0, 0, true},
		{"a", "", 0, 0, true}, // a renewal
		{"", "", 0, 0, false}, // a release
		{"a", "", 0, 0, true}, // taken back by the same pod: no change of leader
		{"b", "a", 1, 1, false},
		{"b", "", 1, 1, true}, // the successor's confirmation
		{"", "", 1, 1, false},
		{"c", "", 2, 1, true},
	} {
		lw.observe(state(step.holder, step.from))
		st := lw.get("web")
		if st.holder != step.holder || st.tenures != step.tenures || st.handovers != step.handovers || st.confirmed() != step.confirmed || st.transitions != token {
			t.Fatalf("after %+v: %+v", step, st)
		}
	}
}
