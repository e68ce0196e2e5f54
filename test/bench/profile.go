package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
)

// profileRun is a window of pod creations of one kind with the CPU profiles taken meanwhile.
type profileRun struct {
	pods   int
	window time.Duration
	// cpu is each process's CPU time in the window, from /proc.
	cpu map[string]time.Duration
	// apiServer and webhook are the profiles' samples in buckets (see bucketsOf); webhook is empty unless the
	// kind is ours.
	apiServer, webhook []bucket
}

// bucket is the CPU time of the profile's samples attributed to one part of the work.
type bucket struct {
	name string
	cpu  time.Duration
}

// perPod is a bucket's CPU time per pod created in the window.
func (r *profileRun) perPod(d time.Duration) time.Duration {
	if r.pods == 0 {
		return 0
	}
	return d / time.Duration(r.pods)
}

// profileSeries creates pods of kind k from concurrency goroutines for window while kube-apiserver (and, for our
// kind, the webhook) record a CPU profile; the profiles are written to dir and summarised in buckets.
func profileSeries(ctx context.Context, cs kubernetes.Interface, pids map[string]int, pprofAddr, dir string, k kind, concurrency int, window time.Duration) (*profileRun, error) {
	seconds := strconv.Itoa(max(1, int(window.Round(time.Second)/time.Second)))
	name := strings.ReplaceAll(string(k), " ", "-")
	apiPath, hookPath := filepath.Join(dir, "kube-apiserver-"+name+".pprof"), filepath.Join(dir, "webhook-"+name+".pprof")

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		data, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", seconds).DoRaw(ctx)
		if err == nil {
			err = os.WriteFile(apiPath, data, 0o644)
		}
		if err != nil {
			errs <- fmt.Errorf("kube-apiserver's CPU profile: %w", err)
		}
	})
	if k == ourWebhook {
		wg.Go(func() {
			if err := fetch("http://"+pprofAddr+"/debug/pprof/profile?seconds="+seconds, hookPath); err != nil {
				errs <- fmt.Errorf("the webhook's CPU profile: %w", err)
			}
		})
	}
	profiled := make(chan struct{})
	go func() { wg.Wait(); close(profiled) }()

	before := map[string]time.Duration{}
	for proc, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return nil, fmt.Errorf("CPU time of %s: %w", proc, err)
		}
		before[proc] = t
	}
	began := time.Now()
	var created atomic.Int64
	var createErr atomic.Value
	var creators sync.WaitGroup
	for g := range concurrency {
		creators.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-profiled:
					return
				default:
				}
				_, err := createPod(ctx, cs, k.namespace(), fmt.Sprintf("prof-%s-%d-%d", name, g, i), fmt.Sprintf("prof-%s-g%d-%d", name, g, i/3), k != noWebhook)
				if err != nil {
					createErr.CompareAndSwap(nil, err)
					return
				}
				created.Add(1)
			}
		})
	}
	creators.Wait()
	run := &profileRun{pods: int(created.Load()), window: time.Since(began), cpu: map[string]time.Duration{}}
	for proc, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return nil, fmt.Errorf("CPU time of %s: %w", proc, err)
		}
		run.cpu[proc] = t - before[proc]
	}
	<-profiled
	close(errs)
	for err := range errs {
		return nil, err
	}
	if err, _ := createErr.Load().(error); err != nil {
		return nil, err
	}
	var err error
	if run.apiServer, err = bucketsOf(ctx, apiPath, apiServerBuckets); err != nil {
		return nil, err
	}
	if k == ourWebhook {
		if run.webhook, err = bucketsOf(ctx, hookPath, webhookBuckets); err != nil {
			return nil, err
		}
	}
	return run, nil
}

// procCPU is each process's CPU time per pod in the window, in the order of processes.
func (r *profileRun) procCPU(processes []string) string {
	var parts []string
	for _, name := range processes {
		parts = append(parts, fmt.Sprintf("%s %s", name, millis(r.perPod(r.cpu[name]))))
	}
	return strings.Join(parts, ", ")
}

// describe is a profile's buckets per pod, largest first, with the total.
func (r *profileRun) describe(buckets []bucket) string {
	sorted := slices.Clone(buckets)
	slices.SortStableFunc(sorted, func(a, b bucket) int { return cmp.Compare(b.cpu, a.cpu) })
	var total time.Duration
	var parts []string
	for _, b := range sorted {
		total += b.cpu
		if b.cpu > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", b.name, millis(r.perPod(b.cpu))))
		}
	}
	return fmt.Sprintf("%s in all: %s", millis(r.perPod(total)), strings.Join(parts, "; "))
}

func fetch(url, path string) error {
	client := http.Client{Timeout: 5 * time.Minute}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rule puts a sample in a bucket when any frame of its stack contains one of the substrings.
type rule struct {
	bucket string
	frames []string
}

// apiServerBuckets split kube-apiserver's CPU by what the work is for; the first matching rule wins.
var apiServerBuckets = []rule{
	{"garbage collection", []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"}},
	{"applying webhooks' JSON patches", []string{"json-patch"}},
	{"calling mutating webhooks (matchConditions, AdmissionReview, HTTPS, decoding the answer and the patched pod)", []string{"k8s.io/apiserver/pkg/admission/plugin/webhook"}},
	{"storing in etcd (encoding, etcd client)", []string{"k8s.io/apiserver/pkg/storage/etcd3", "go.etcd.io/etcd"}},
	{"watch cache and watchers", []string{"k8s.io/apiserver/pkg/storage/cacher", "k8s.io/apiserver/pkg/endpoints/handlers.(*WatchServer)"}},
	{"serving the create (decoding, other admission, validation, the response)", []string{"k8s.io/apiserver/pkg/endpoints", "k8s.io/apiserver/pkg/server", "net/http"}},
	{"other", nil},
}

// webhookBuckets split the webhook's CPU the same way.
var webhookBuckets = []rule{
	{"garbage collection", []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"}},
	{"binding the ServiceAccount (cache reads)", []string{"pkg/binding."}},
	{"our handler (decode the pod, inject.Mutate, build the patch)", []string{"pkg/webhook.(*PodInjector).Handle"}},
	{"controller-runtime's admission wrapper (AdmissionReview decode and encode, request ID, metrics)", []string{"controller-runtime/pkg/webhook/admission"}},
	{"leader-label controller and caches (watch events of new member pods)", []string{"k8s.io/client-go/tools/cache", "controller-runtime/pkg/internal/controller", "controller-runtime/pkg/cache", "pkg/leaderlabel", "k8s.io/apimachinery/pkg/watch", "k8s.io/client-go/rest/watch"}},
	{"TLS and HTTP", []string{"crypto/", "net/http", "internal/poll", "net."}},
	{"other (metrics, scheduler, idle work)", nil},
}

// bucketsOf reads a CPU profile with go tool pprof -traces and sums its samples by rule.
func bucketsOf(ctx context.Context, path string, rules []rule) ([]bucket, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %w", filepath.Base(path), err)
	}
	sums := make([]time.Duration, len(rules))
	for _, tr := range parseTraces(out) {
		for i, r := range rules {
			if r.frames == nil || tr.matches(r.frames) {
				sums[i] += tr.value
				break
			}
		}
	}
	buckets := make([]bucket, len(rules))
	for i, r := range rules {
		buckets[i] = bucket{r.bucket, sums[i]}
	}
	return buckets, nil
}

// trace is one stack of a profile and its CPU time.
type trace struct {
	value  time.Duration
	frames []string
}

func (t trace) matches(substrings []string) bool {
	for _, f := range t.frames {
		for _, s := range substrings {
			if strings.Contains(f, s) {
				return true
			}
		}
	}
	return false
}

// parseTraces reads go tool pprof -traces output: stacks separated by "-----------+----..." lines, the first
// line of each holding the value before the leaf function.
func parseTraces(out []byte) []trace {
	var traces []trace
	cur := -1 // index of the trace being read, -1 between traces
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----------+") {
			cur = -1
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if cur < 0 {
			// The value line: "      10ms   runtime.memmove". Header lines before the first separator do not parse.
			if len(fields) < 2 {
				continue
			}
			d, err := time.ParseDuration(fields[0])
			if err != nil {
				continue
			}
			traces = append(traces, trace{value: d})
			cur = len(traces) - 1
			fields = fields[1:]
		}
		traces[cur].frames = append(traces[cur].frames, fields[len(fields)-1])
	}
	return traces
}
