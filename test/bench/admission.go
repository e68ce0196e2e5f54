package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/test/cluster"
)

const (
	podNamespace = "bench-pods"
	podAccount   = "bench"
	// nowhereNode is a node that does not exist: pods bound to it are never run, so the node stand-in does not
	// start an elector for each of them, and the API server does all the work it does for any pod creation.
	nowhereNode = "bench-nowhere"
)

// createRun is one series of pod creations.
type createRun struct {
	latencies []time.Duration
	wall      time.Duration
	// cpu is the CPU time each process of the cluster used during the series, by name, to show where the
	// webhook's added cost goes.
	cpu map[string]time.Duration
	// call is the webhook calls as kube-apiserver times them, handler the webhook's handler as
	// controller-runtime times it; empty without the webhook.
	call, handler meanOf
	// requests counts what the API server served during the series, by "<verb> <resource>".
	requests map[string]float64
}

func (r *createRun) perSecond() float64 { return float64(len(r.latencies)) / r.wall.Seconds() }

// merge adds another series of the same kind to r.
func (r *createRun) merge(o *createRun) {
	r.latencies = append(r.latencies, o.latencies...)
	r.wall += o.wall
	for k, v := range o.cpu {
		r.cpu[k] += v
	}
	for k, v := range o.requests {
		r.requests[k] += v
	}
	r.call.add(o.call)
	r.handler.add(o.handler)
}

// meanOf accumulates a Prometheus summary's or histogram's sum (seconds) and count.
type meanOf struct{ sum, count float64 }

func (m *meanOf) add(o meanOf) { m.sum, m.count = m.sum+o.sum, m.count+o.count }

func (m meanOf) mean() time.Duration {
	if m.count <= 0 {
		return 0
	}
	return time.Duration(m.sum / m.count * float64(time.Second))
}

// explain says where the series' time went: the webhook call as both sides time it, and CPU per pod.
func (r *createRun) explain(processes []string) string {
	var parts []string
	if r.call.count > 0 {
		parts = append(parts, fmt.Sprintf("webhook call %s as kube-apiserver times it, %s in the handler (means)",
			millis(r.call.mean()), millis(r.handler.mean())))
	}
	var cpu []string
	var sum time.Duration
	for _, name := range processes {
		per := r.cpu[name] / time.Duration(len(r.latencies))
		sum += per
		cpu = append(cpu, fmt.Sprintf("%s %s", name, millis(per)))
	}
	parts = append(parts, fmt.Sprintf("CPU per pod %s (%s)", millis(sum), strings.Join(cpu, ", ")))
	var reqs []string
	for _, k := range sortedKeys(r.requests) {
		if per := r.requests[k] / float64(len(r.latencies)); per >= 0.05 {
			reqs = append(reqs, fmt.Sprintf("%.2f %s", per, k))
		}
	}
	parts = append(parts, "API requests per pod: "+strings.Join(reqs, ", "))
	return strings.Join(parts, "; ")
}

// admissionResult holds every series, by runKey, and the webhook's memory while it served them.
type admissionResult struct {
	runs       map[string]*createRun
	webhookMem memory
	// processes are the names of createRun.cpu, in the order to show them.
	processes []string
}

// webhookName is the opt-in webhook of config/webhook/manifests.yaml, as kube-apiserver's metrics name it.
const webhookName = "opt-in.pods.leader-election.io"

func runKey(withWebhook bool, concurrency int) string {
	if withWebhook {
		return "with/" + strconv.Itoa(concurrency)
	}
	return "without/" + strconv.Itoa(concurrency)
}

// runAdmission starts the local cluster (kube-apiserver with the webhook registered as the shipped configuration
// registers it, kube-controller-manager, the node stand-in) and creates n pods per series at each concurrency:
// annotated ones, which the API server sends through the webhook, and the same pods unannotated, which
// matchConditions keep away from it. Everything else about the two series is the same. Each kind runs rounds
// series, pooled.
func runAdmission(ctx context.Context, bins binaries, dir string, n, rounds int, concurrency []int, logf func(string, ...any)) (*admissionResult, error) {
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	c, err := cluster.Start(ctx, cluster.Options{BinDir: bins.dir, WorkDir: dir, Logf: logf,
		// The webhook's own request latency, next to kube-apiserver's view of the same calls.
		WebhookArgs: []string{"--metrics-bind-address=" + metricsAddr}})
	if err != nil {
		return nil, fmt.Errorf("starting the local cluster: %w", err)
	}
	defer c.Stop()
	cfg := rest.CopyConfig(c.Env.Config)
	// The clients measure the API server, not client-go's default rate limit of 5 requests per second.
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := preparePodNamespace(ctx, cs); err != nil {
		return nil, err
	}
	pids := map[string]int{"client (this benchmark)": os.Getpid()}
	res := &admissionResult{runs: map[string]*createRun{}}
	for _, p := range []struct{ name, bin string }{
		{"kube-apiserver", filepath.Join(c.Env.BinaryAssetsDirectory, "kube-apiserver")},
		{"etcd", filepath.Join(c.Env.BinaryAssetsDirectory, "etcd")},
		{"webhook", bins.webhook},
		{"kube-controller-manager", filepath.Join(c.Env.BinaryAssetsDirectory, "kube-controller-manager")},
	} {
		if pids[p.name], err = childPID(p.bin); err != nil {
			return nil, err
		}
		res.processes = append(res.processes, p.name)
	}
	res.processes = append(res.processes, "client (this benchmark)")

	// Warm up both paths: connections, the webhook's caches (the ServiceAccount must be in them before an
	// annotated pod is admitted) and the RoleBinding the first injected pod creates.
	logf("pod creation: warming up")
	err = poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		_, err := createPod(ctx, cs, "warmup-first", "warmup-first", true)
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the first annotated pod was not admitted: %w", err)
	}
	for _, with := range []bool{false, true} {
		if _, err := createPods(ctx, cs, "warmup-"+strconv.FormatBool(with), 20, 4, with); err != nil {
			return nil, err
		}
	}

	for _, conc := range concurrency {
		// ABBA order: a drift of the machine over the rounds weighs on both series alike.
		var order []bool
		for r := range rounds {
			if r%2 == 0 {
				order = append(order, false, true)
			} else {
				order = append(order, true, false)
			}
		}
		for i, with := range order {
			key := runKey(with, conc)
			prefix := fmt.Sprintf("%s-r%d", strings.ReplaceAll(key, "/", "-c"), i/2)
			run, sampled, err := measureSeries(ctx, cs, pids, metricsAddr, prefix, n, conc, with)
			if err != nil {
				return nil, err
			}
			if with {
				res.webhookMem.rss = max(res.webhookMem.rss, sampled.rss)
			}
			logf("pod creation %-10s %d pods: p50 %s, p99 %s, %.0f pods/s; %s", key, n,
				percentile(run.latencies, 0.5).Round(10*time.Microsecond), percentile(run.latencies, 0.99).Round(10*time.Microsecond),
				run.perSecond(), run.explain(res.processes))
			if res.runs[key] == nil {
				res.runs[key] = run
			} else {
				res.runs[key].merge(run)
			}
		}
	}
	mem, err := readMemory(pids["webhook"])
	if err != nil {
		return nil, fmt.Errorf("the webhook's memory: %w", err)
	}
	res.webhookMem.peak = max(mem.peak, res.webhookMem.rss)
	return res, nil
}

// measureSeries creates n pods at concurrency and observes the cluster's processes meanwhile; it also returns
// the webhook's largest VmRSS during the series.
func measureSeries(ctx context.Context, cs kubernetes.Interface, pids map[string]int, metricsAddr, prefix string, n, concurrency int, with bool) (*createRun, memory, error) {
	var sampled memory
	before, err := observe(ctx, cs, pids, metricsAddr)
	if err != nil {
		return nil, sampled, err
	}
	stopSampling := sampleMemory(pids["webhook"], &sampled)
	run, err := createPods(ctx, cs, prefix, n, concurrency, with)
	stopSampling()
	if err != nil {
		return nil, sampled, err
	}
	after, err := observe(ctx, cs, pids, metricsAddr)
	if err != nil {
		return nil, sampled, err
	}
	after.since(before, run)
	return run, sampled, nil
}

// observation is what the cluster's processes and metrics say at one moment.
type observation struct {
	cpu           map[string]time.Duration
	requests      map[string]float64
	call, handler meanOf
}

func observe(ctx context.Context, cs kubernetes.Interface, pids map[string]int, webhookMetrics string) (observation, error) {
	o := observation{cpu: map[string]time.Duration{}}
	for name, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return o, fmt.Errorf("CPU time of %s: %w", name, err)
		}
		o.cpu[name] = t
	}
	api, err := apiServerMetrics(ctx, cs)
	if err != nil {
		return o, err
	}
	if o.requests, err = requestCounts(ctx, cs); err != nil {
		return o, err
	}
	call := map[string]string{"name": webhookName}
	o.call = meanOf{sumSamples(api, "apiserver_admission_webhook_admission_duration_seconds_sum", call),
		sumSamples(api, "apiserver_admission_webhook_admission_duration_seconds_count", call)}
	hook, err := httpMetrics("http://" + webhookMetrics + "/metrics")
	if err != nil {
		return o, fmt.Errorf("reading the webhook's metrics: %w", err)
	}
	handler := map[string]string{"webhook": "/mutate-pod"}
	o.handler = meanOf{sumSamples(hook, "controller_runtime_webhook_latency_seconds_sum", handler),
		sumSamples(hook, "controller_runtime_webhook_latency_seconds_count", handler)}
	return o, nil
}

// since fills run with what changed from before to o.
func (o observation) since(before observation, run *createRun) {
	run.cpu = map[string]time.Duration{}
	for name, t := range o.cpu {
		run.cpu[name] = t - before.cpu[name]
	}
	run.requests = map[string]float64{}
	for k, v := range o.requests {
		// Reading the metrics is a request too; it is not the series'.
		if d := v - before.requests[k]; d > 0 && k != "get " {
			run.requests[k] = d
		}
	}
	run.call = meanOf{o.call.sum - before.call.sum, o.call.count - before.call.count}
	run.handler = meanOf{o.handler.sum - before.handler.sum, o.handler.count - before.handler.count}
}

func preparePodNamespace(ctx context.Context, cs kubernetes.Interface) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podNamespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", podNamespace, err)
	}
	// The pods' ServiceAccount, which the webhook binds to the elector's role (the ServiceAccount admission
	// plugin refuses pods whose account does not exist).
	_, err := cs.CoreV1().ServiceAccounts(podNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: podAccount}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating ServiceAccount %s/%s: %w", podNamespace, podAccount, err)
	}
	return nil
}

// createPods creates n pods named prefix-NNNN from concurrency goroutines and times each creation. It checks
// that annotated pods were injected and the others were not.
func createPods(ctx context.Context, cs kubernetes.Interface, prefix string, n, concurrency int, annotated bool) (*createRun, error) {
	run := &createRun{latencies: make([]time.Duration, n)}
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				began := time.Now()
				pod, err := createPod(ctx, cs, fmt.Sprintf("%s-%04d", prefix, i), fmt.Sprintf("%s-g%d", prefix, i/3), annotated)
				run.latencies[i] = time.Since(began)
				if err == nil && hasElector(pod) != annotated {
					err = fmt.Errorf("pod %s: annotated %v but injected %v", pod.Name, annotated, hasElector(pod))
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	run.wall = time.Since(start)
	return run, firstErr
}

// createPod creates one pod of group (its Lease name when annotated).
func createPod(ctx context.Context, cs kubernetes.Interface, name, group string, annotated bool) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench", "group": group}},
		Spec: corev1.PodSpec{
			NodeName:           nowhereNode,
			ServiceAccountName: podAccount,
			Containers: []corev1.Container{{
				Name: "app", Image: "bench/app:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}},
		},
	}
	if annotated {
		// A bare pod has no owning workload to name the Lease after, so it names one: the pods come in groups of
		// three per Lease, like the replicas of small Deployments (the webhook's leader-label controller looks at
		// every pod of a Lease on each change, so one Lease for all of them would measure a case nobody has).
		pod.Annotations = map[string]string{inject.AnnotationEnabled: "true", inject.AnnotationLeaseName: group}
	}
	out, err := cs.CoreV1().Pods(podNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s: %w", name, err)
	}
	return out, nil
}

func hasElector(pod *corev1.Pod) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == inject.ContainerName {
				return true
			}
		}
	}
	return false
}

// sampleMemory records the largest VmRSS of pid every 50 ms into peak.rss until the returned function is called.
func sampleMemory(pid int, peak *memory) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if m, err := readMemory(pid); err == nil && m.rss > peak.rss {
				peak.rss = m.rss
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); <-finished }
}

// childPID finds the running child process of this one started from bin: the cluster package starts the
// webhook and does not expose its process.
func childPID(bin string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return 0, err
	}
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != want {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: state, ppid, ...
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == self {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no running child process of %s", bin)
}
