package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/cluster"
)

const (
	// podNamespace holds the pods of our webhook's series and of the series without a webhook, noopNamespace
	// those of the no-op webhook's: the two webhook configurations select one namespace each.
	podNamespace  = "bench-pods"
	noopNamespace = "bench-noop"
	// policyNamespace holds the pods of admission mode policy's series: only the MutatingAdmissionPolicies'
	// bindings select it, and our webhook configuration leaves it out.
	policyNamespace = "bench-policy"
	podAccount      = "bench"
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

// cpuPerPod is the CPU time a process used per pod of the series.
func (r *createRun) cpuPerPod(process string) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.cpu[process] / time.Duration(len(r.latencies))
}

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
	switch {
	case r.call.count > 0 && r.handler.count > 0:
		parts = append(parts, fmt.Sprintf("webhook call %s as kube-apiserver times it, %s in the handler (means)",
			millis(r.call.mean()), millis(r.handler.mean())))
	case r.call.count > 0:
		parts = append(parts, fmt.Sprintf("webhook call %s as kube-apiserver times it (mean)", millis(r.call.mean())))
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
	// profiles are the CPU profiles taken while pods of each kind were created, by kind.
	profiles map[kind]*profileRun
	// cold is the first annotated pods after a restart of the webhook.
	cold *coldStart
	// load is the one-minute load average when the phase began and when it ended.
	loadBefore, loadAfter string
}

// kind is what admits the pods of a series.
type kind string

const (
	// noWebhook: pods without the annotation, which matchConditions keep away from every webhook.
	noWebhook kind = "no webhook"
	// noopWebhook: annotated pods in noopNamespace, sent to test/bench/noop, which allows them unchanged.
	noopWebhook kind = "no-op webhook"
	// ourWebhook: annotated pods in podNamespace, sent to ours, which injects the elector and binds the account.
	ourWebhook kind = "ours"
	// policyMode: annotated pods in policyNamespace, injected by the API server itself with config/injection-policies's
	// MutatingAdmissionPolicies (admission mode policy); the manager binds the account once the pod is stored.
	policyMode kind = "policy mode"
)

// kinds in the order of the first round; the next round runs them backwards (ABCCBA).
var kinds = []kind{noWebhook, noopWebhook, ourWebhook, policyMode}

// namespace is where a kind's pods are created.
func (k kind) namespace() string {
	switch k {
	case noopWebhook:
		return noopNamespace
	case policyMode:
		return policyNamespace
	}
	return podNamespace
}

// injects reports whether the kind's pods come back with the elector.
func (k kind) injects() bool { return k == ourWebhook || k == policyMode }

// Names of the opt-in webhooks as kube-apiserver's metrics name them: ours from config/webhook/manifests.yaml,
// and the no-op's copy of it.
const (
	webhookName     = "opt-in.pods.leader-election.io"
	noopWebhookName = "opt-in.noop.bench.leader-election.io"
)

func (k kind) webhookName() string {
	switch k {
	case ourWebhook:
		return webhookName
	case noopWebhook:
		return noopWebhookName
	}
	return ""
}

// process is the name of the kind's webhook process in createRun.cpu.
func (k kind) process() string {
	switch k {
	case ourWebhook:
		return "webhook"
	case noopWebhook:
		return "no-op webhook"
	}
	return ""
}

func runKey(k kind, concurrency int) string { return string(k) + "/" + strconv.Itoa(concurrency) }

// runAdmission starts the local cluster (kube-apiserver with the webhook registered as the shipped configuration
// registers it, kube-controller-manager, the node stand-in) and the no-op webhook registered by a copy of that
// configuration, and creates p.pods pods per series at each concurrency: unannotated ones, which matchConditions
// keep away from every webhook; annotated ones in a namespace only the no-op's configuration selects; and
// annotated ones our webhook injects. Everything else about the series is the same. Each kind runs p.podRounds
// series in ABCCBA order, pooled. Then it profiles the API server and the webhook while pods of each kind are
// created, and restarts the webhook to time the first pods after a cold start.
func runAdmission(ctx context.Context, bins binaries, dir string, p params, logf func(string, ...any)) (*admissionResult, error) {
	res := &admissionResult{runs: map[string]*createRun{}, loadBefore: loadAverage()}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	c, err := cluster.Start(ctx, cluster.Options{BinDir: bins.dir, WorkDir: dir, Logf: logf,
		// The webhook's own request latency, next to kube-apiserver's view of the same calls, and its profiler.
		WebhookArgs: []string{"--metrics-bind-address=" + metricsAddr, "--pprof-bind-address=" + pprofAddr}})
	if err != nil {
		return nil, fmt.Errorf("starting the local cluster: %w", err)
	}
	defer c.Stop()
	ps := newProcs()
	defer ps.killAll()
	noop, err := startNoop(ctx, c, ps, bins.noop, dir)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(c.Env.Config)
	// The clients measure the API server, not client-go's default rate limit of 5 requests per second.
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, ns := range []string{podNamespace, noopNamespace, policyNamespace} {
		if err := preparePodNamespace(ctx, cs, ns); err != nil {
			return nil, err
		}
	}
	if err := registerNoop(ctx, cs, noop.port); err != nil {
		return nil, err
	}
	if err := installPolicyMode(ctx, cs); err != nil {
		return nil, err
	}
	pids := map[string]int{"client (this benchmark)": os.Getpid(), "no-op webhook": noop.proc.pid(), "webhook": c.WebhookPID()}
	for _, p := range []struct{ name, bin string }{
		{"kube-apiserver", filepath.Join(c.Env.BinaryAssetsDirectory, "kube-apiserver")},
		{"etcd", filepath.Join(c.Env.BinaryAssetsDirectory, "etcd")},
		{"kube-controller-manager", filepath.Join(c.Env.BinaryAssetsDirectory, "kube-controller-manager")},
	} {
		if pids[p.name], err = childPID(p.bin); err != nil {
			return nil, err
		}
	}
	res.processes = []string{"kube-apiserver", "etcd", "webhook", "no-op webhook", "kube-controller-manager", "client (this benchmark)"}

	// Warm up every path: connections, the webhook's first requests, the RoleBinding the first injected pod
	// creates. The no-op's configuration was just changed, so wait until the API server routes to it.
	logf("pod creation: warming up")
	for _, k := range []kind{ourWebhook, noopWebhook, policyMode} {
		i := 0
		err = poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
			i++
			pod, err := createPod(ctx, cs, k.namespace(), fmt.Sprintf("warmup-first-%d", i), "warmup-first", true)
			return err == nil && hasElector(pod) == k.injects(), nil
		})
		if err != nil {
			return nil, fmt.Errorf("the first annotated pod in namespace %s was not admitted as %s admits it: %w", k.namespace(), k, err)
		}
	}
	for _, k := range kinds {
		if _, err := createPods(ctx, cs, k, "warmup-"+strings.ReplaceAll(string(k), " ", ""), 20, 4); err != nil {
			return nil, err
		}
	}

	for _, conc := range p.concurrency {
		// ABCCBA order: a drift of the machine over the rounds weighs on every kind alike.
		var order []kind
		for r := range p.podRounds {
			for i := range kinds {
				if r%2 == 0 {
					order = append(order, kinds[i])
				} else {
					order = append(order, kinds[len(kinds)-1-i])
				}
			}
		}
		for i, k := range order {
			key := runKey(k, conc)
			prefix := fmt.Sprintf("%s-c%d-r%d", strings.ReplaceAll(string(k), " ", ""), conc, i/len(kinds))
			run, sampled, err := measureSeries(ctx, cs, pids, metricsAddr, prefix, p.pods, conc, k)
			if err != nil {
				return nil, err
			}
			if k == ourWebhook {
				res.webhookMem.rss = max(res.webhookMem.rss, sampled.rss)
			}
			logf("pod creation %-16s %d pods: p50 %s, p99 %s, %.0f pods/s; %s", key, p.pods,
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

	conc := slices.Max(p.concurrency)
	res.profiles = map[kind]*profileRun{}
	for _, k := range kinds {
		logf("CPU profile: %s, %d concurrent creations for %s", k, conc, p.profileTime)
		if res.profiles[k], err = profileSeries(ctx, cs, pids, pprofAddr, dir, k, conc, p.profileTime); err != nil {
			return nil, err
		}
	}

	logf("cold start: restarting the webhook, then %d annotated pods one at a time", p.coldPods)
	if res.cold, err = measureColdStart(ctx, c, cs, p.coldPods); err != nil {
		return nil, err
	}
	res.loadAfter = loadAverage()
	return res, nil
}

// coldStart is how the webhook serves the first pods after a restart.
type coldStart struct {
	// ready is from the restart until the new process reported ready.
	ready time.Duration
	// latencies are the creations of the pods after it, one at a time, in order.
	latencies []time.Duration
}

// measureColdStart restarts the webhook and times n annotated pods created one after another.
func measureColdStart(ctx context.Context, c *cluster.Cluster, cs kubernetes.Interface, n int) (*coldStart, error) {
	began := time.Now()
	if err := c.RestartWebhook(ctx); err != nil {
		return nil, fmt.Errorf("restarting the webhook: %w", err)
	}
	cold := &coldStart{ready: time.Since(began)}
	for i := range n {
		began := time.Now()
		pod, err := createPod(ctx, cs, podNamespace, fmt.Sprintf("cold-%04d", i), fmt.Sprintf("cold-g%d", i/3), true)
		cold.latencies = append(cold.latencies, time.Since(began))
		if err != nil {
			return nil, err
		}
		if !hasElector(pod) {
			return nil, fmt.Errorf("pod %s was admitted without the elector after the restart", pod.Name)
		}
	}
	return cold, nil
}

// noopProcess is the running no-op webhook.
type noopProcess struct {
	proc *proc
	port int
}

// startNoop starts test/bench/noop with the cluster's webhook certificate and waits until it accepts TLS.
func startNoop(ctx context.Context, c *cluster.Cluster, ps *procs, bin, dir string) (*noopProcess, error) {
	port := freePort()
	wo := c.Env.WebhookInstallOptions
	pr, err := ps.start("no-op webhook", bin, []string{"--port=" + strconv.Itoa(port), "--cert-dir=" + wo.LocalServingCertDir},
		nil, filepath.Join(dir, "noop-webhook.log"), nil)
	if err != nil {
		return nil, err
	}
	err = poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		if pr.exited() {
			return false, fmt.Errorf("the no-op webhook exited:\n%s", pr.tail())
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false, nil
		}
		conn.Close()
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the no-op webhook did not listen: %w", err)
	}
	return &noopProcess{proc: pr, port: port}, nil
}

// installPolicyMode installs admission mode policy's MutatingAdmissionPolicies, the ValidatingAdmissionPolicies
// that go with them and their parameters from config/injection-policies, with every binding narrowed to policyNamespace,
// and takes policyNamespace out of our webhook configuration: as with the no-op, each way of admitting sees one
// namespace's pods, and the API server evaluates every configuration for every pod alike.
func installPolicyMode(ctx context.Context, cs kubernetes.Interface) error {
	var objs []runtime.Object
	for _, file := range []string{"params.yaml", "injection_policies.yaml", "bindings.yaml"} {
		o, err := cluster.ReadManifests("config/injection-policies/" + file)
		if err != nil {
			return fmt.Errorf("admission mode policy's policies: %w", err)
		}
		objs = append(objs, o...)
	}
	only := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{policyNamespace}}}}
	narrow := func(sel **metav1.LabelSelector) {
		if *sel == nil {
			*sel = &metav1.LabelSelector{}
		}
		(*sel).MatchExpressions = append((*sel).MatchExpressions, only.MatchExpressions...)
	}
	ar := cs.AdmissionregistrationV1()
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			if _, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}}, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
				err = nil
			}
			if err == nil {
				_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			}
		case *admissionregistrationv1.MutatingAdmissionPolicy:
			_, err = ar.MutatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			_, err = ar.ValidatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
			if o.Spec.MatchResources == nil {
				o.Spec.MatchResources = &admissionregistrationv1.MatchResources{}
			}
			narrow(&o.Spec.MatchResources.NamespaceSelector)
			_, err = ar.MutatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			if o.Spec.MatchResources == nil {
				o.Spec.MatchResources = &admissionregistrationv1.MatchResources{}
			}
			narrow(&o.Spec.MatchResources.NamespaceSelector)
			_, err = ar.ValidatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("config/injection-policies holds a %T, which the benchmark does not know how to install", obj)
		}
		if err != nil {
			return fmt.Errorf("installing admission mode policy: %w", err)
		}
	}
	mwcs := ar.MutatingWebhookConfigurations()
	ours, err := mwcs.Get(ctx, "leader-election", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading our webhook configuration: %w", err)
	}
	for i := range ours.Webhooks {
		w := &ours.Webhooks[i]
		w.NamespaceSelector.MatchExpressions = append(w.NamespaceSelector.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{policyNamespace}})
	}
	if _, err := mwcs.Update(ctx, ours, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("taking %s out of our webhook configuration: %w", policyNamespace, err)
	}
	return nil
}

// registerNoop registers the no-op webhook with a copy of our configuration as the cluster installed it (same
// rules, matchConditions, failure policy, timeouts and CA), pointed at the no-op and selecting noopNamespace
// only, and takes noopNamespace out of our configuration: each webhook sees one namespace's pods, and the API
// server evaluates both configurations for every pod of every series alike.
func registerNoop(ctx context.Context, cs kubernetes.Interface, port int) error {
	mwcs := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	ours, err := mwcs.Get(ctx, "leader-election", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading our webhook configuration: %w", err)
	}
	noop := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "leader-election-noop"}}
	for i := range ours.Webhooks {
		w := &ours.Webhooks[i]
		w.NamespaceSelector.MatchExpressions = append(w.NamespaceSelector.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{noopNamespace}})
		copied := w.DeepCopy()
		copied.Name = strings.Replace(w.Name, ".pods.", ".noop.bench.", 1)
		path := ""
		if w.ClientConfig.URL != nil {
			if u, err := url.Parse(*w.ClientConfig.URL); err == nil {
				path = u.Path
			}
		}
		copied.ClientConfig.URL = ptr.To(fmt.Sprintf("https://127.0.0.1:%d%s", port, path))
		copied.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{noopNamespace}}}}
		noop.Webhooks = append(noop.Webhooks, *copied)
	}
	if _, err := mwcs.Update(ctx, ours, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("taking %s out of our webhook configuration: %w", noopNamespace, err)
	}
	if _, err := mwcs.Create(ctx, noop, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("registering the no-op webhook: %w", err)
	}
	return nil
}

// loadAverage is the one-minute load average, as /proc/loadavg gives it.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// measureSeries creates n pods at concurrency and observes the cluster's processes meanwhile; it also returns
// the webhook's largest VmRSS during the series.
func measureSeries(ctx context.Context, cs kubernetes.Interface, pids map[string]int, metricsAddr, prefix string, n, concurrency int, k kind) (*createRun, memory, error) {
	var sampled memory
	before, err := observe(ctx, cs, pids, metricsAddr, k)
	if err != nil {
		return nil, sampled, err
	}
	stopSampling := sampleMemory(pids["webhook"], &sampled)
	run, err := createPods(ctx, cs, k, prefix, n, concurrency)
	stopSampling()
	if err != nil {
		return nil, sampled, err
	}
	after, err := observe(ctx, cs, pids, metricsAddr, k)
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

func observe(ctx context.Context, cs kubernetes.Interface, pids map[string]int, webhookMetrics string, k kind) (observation, error) {
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
	call := map[string]string{"name": k.webhookName()}
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

func preparePodNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	// The pods' ServiceAccount, which the webhook binds to the elector's role (the ServiceAccount admission
	// plugin refuses pods whose account does not exist).
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: podAccount}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating ServiceAccount %s/%s: %w", ns, podAccount, err)
	}
	return nil
}

// createPods creates n pods of kind k named prefix-NNNN from concurrency goroutines and times each creation. It
// checks that only our webhook's pods were injected.
func createPods(ctx context.Context, cs kubernetes.Interface, k kind, prefix string, n, concurrency int) (*createRun, error) {
	annotated := k != noWebhook
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
				pod, err := createPod(ctx, cs, k.namespace(), fmt.Sprintf("%s-%04d", prefix, i), fmt.Sprintf("%s-g%d", prefix, i/3), annotated)
				run.latencies[i] = time.Since(began)
				if err == nil && hasElector(pod) != k.injects() {
					err = fmt.Errorf("pod %s/%s (%s): injected %v", pod.Namespace, pod.Name, k, hasElector(pod))
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

// createPod creates one pod of group (its Lease name when annotated) in namespace ns.
func createPod(ctx context.Context, cs kubernetes.Interface, ns, name, group string, annotated bool) (*corev1.Pod, error) {
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
		pod.Annotations = map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: group}
	}
	out, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s: %w", name, err)
	}
	return out, nil
}

func hasElector(pod *corev1.Pod) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == contract.ContainerName {
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
