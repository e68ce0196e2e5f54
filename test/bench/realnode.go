package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/controlplane"
	"github.com/leader-election/leader-election/test/node"
)

// The real-node phase: a kubelet, containerd and kube-proxy (test/node), the chart installed with helm, and real
// Deployments of config/samples' app. It measures what only a real ReplicaSet controller, real pod termination
// and a real Service show: how often the Lease changes hands in a RollingUpdate, and how soon a healthy replica
// serves the Service after the leader's app starts failing.

const nodeNamespace = "bench-node"

// nodeTimings are the e2e suite's: the fastest the timing rules accept, so that release-and-race, the baseline,
// is as quick as it can be.
var nodeTimings = map[string]string{
	contract.AnnotationLeaseDuration: "4s",
	contract.AnnotationRenewDeadline: "2s",
	contract.AnnotationRetryPeriod:   "500ms",
}

// rolloutKind is one configuration of a rolling update.
type rolloutKind struct {
	replicas int
	// maxUnavailableZero: maxUnavailable 0, maxSurge 1; otherwise the Deployment's default (25% / 25%).
	maxUnavailableZero bool
	mode               rolloutMode
}

// rolloutMode is what the leader does when its pod is deleted, and whether it goes last.
type rolloutMode string

const (
	// modeHandover is this project: the leader-label controller's deletion cost keeps the leader for last, and
	// the leader hands the Lease to a new pod.
	modeHandover rolloutMode = "handover"
	// modeRelease is the baseline: the leader still goes last, but releases the Lease to a race
	// (leader-election/handover: "false").
	modeRelease rolloutMode = "release-and-race"
	// modeToday is the project before issue 13: release-and-race, and the leader deleted whenever the
	// ReplicaSet picks it (the template sets pod-deletion-cost "0" itself, which the controller never changes).
	modeToday rolloutMode = "release-and-race, leader not last"
)

var rolloutModes = []rolloutMode{modeHandover, modeRelease, modeToday}

func (m rolloutMode) short() string {
	return map[rolloutMode]string{modeHandover: "handover", modeRelease: "race", modeToday: "today"}[m]
}

func (k rolloutKind) strategy() string {
	if k.maxUnavailableZero {
		return "maxUnavailable 0"
	}
	return "default strategy"
}

// rolloutResult is what one rolling update did to its Lease.
type rolloutResult struct {
	// changes counts changes of the holder between two pods (a moment without a holder in between is no change
	// of its own); holders is the sequence the watch saw, "" for none.
	changes     int
	vacant      int // moments without a holder
	holders     []string
	transitions int32 // leaseTransitions after minus before
	oldToNew    bool  // the first holder was a pod of the old ReplicaSet and the last one of the new
	took        time.Duration
}

// appFailureResult is the time from the leader's app starting to fail until a healthy replica answered the
// Service, per trial, with the app check's detection time the goal is measured against.
type appFailureResult struct {
	served    map[string][]time.Duration // by modeName
	never     map[string]int             // trials in which no other replica answered within neverAfter
	detection time.Duration
	// staleAnswers counts answers from the old leader received after the Lease had left it (the Service's
	// data path lags the Lease), and staleFor is the latest of them, after the Lease left.
	staleAnswers map[string]int
	staleFor     map[string]time.Duration
}

// neverAfter is how long a trial waits for another replica to answer before it counts as "never": without a
// handover the elector has no successor to hand to, and a leader whose app fails keeps the Lease (an unhealthy
// leader serves no worse than none), which is today's behaviour too.
const neverAfter = 15 * time.Second

// nodeResult gathers the real-node phase.
type nodeResult struct {
	rollouts   map[rolloutKind]*rolloutResult
	appFailure *appFailureResult
	machine    string // "restored" or what differed
}

// runRealNode brings up the node, measures, and tears it down; it fails if the machine is not as before.
func runRealNode(ctx context.Context, p params, bins binaries, workDir string, logf func(string, ...any)) (res *nodeResult, err error) {
	root := controlplane.RepoRoot()
	if err := node.Preflight(root, logf); err != nil {
		return nil, fmt.Errorf("the real-node rows need a node (kubelet, containerd, kube-proxy; root): %w", err)
	}
	cp, err := controlplane.Assets()
	if err != nil {
		return nil, err
	}
	nodeBin, err := node.Binaries(root)
	if err != nil {
		return nil, err
	}
	version, err := node.ChartAppVersion(root)
	if err != nil {
		return nil, err
	}
	imgDir := filepath.Join(workDir, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return nil, err
	}
	images, err := node.ProductImages(bins.dir, imgDir, version)
	if err != nil {
		return nil, err
	}
	logf("real node: starting (kubelet, containerd, kube-proxy; everything in 198.18.0.0/15)")
	n, err := node.Start(ctx, node.Options{ControlPlane: cp, NodeBinaries: nodeBin, RepoRoot: root, Images: images, Logf: func(string, ...any) {}})
	if err != nil {
		return nil, fmt.Errorf("starting the real node: %w", err)
	}
	defer func() {
		// Whatever happened, the node goes and the machine is compared with before; a difference is reported
		// even when the measurement failed first.
		var problems []error
		if stopErr := n.Stop(); stopErr != nil {
			problems = append(problems, fmt.Errorf("stopping the real node: %w", stopErr))
		}
		if diff := n.Before().Diff(node.TakeSnapshot()); len(diff) > 0 {
			problems = append(problems, fmt.Errorf("the machine is not as before the node started:\n  %s", strings.Join(diff, "\n  ")))
		} else {
			logf("real node: stopped; machine as before")
			if res != nil {
				res.machine = "restored"
			}
		}
		if len(problems) > 0 {
			err = errors.Join(append([]error{err}, problems...)...)
		}
	}()
	if err := n.InstallChart(ctx); err != nil {
		return nil, err
	}
	cs := n.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nodeNamespace}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	sa, err := cluster.ReadManifest[*corev1.ServiceAccount]("config/samples/serviceaccount.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().ServiceAccounts(nodeNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return nil, err
	}

	res = &nodeResult{rollouts: map[rolloutKind]*rolloutResult{}}
	for _, n := range p.rolloutReplicas {
		for _, zero := range []bool{false, true} {
			for _, mode := range rolloutModes {
				k := rolloutKind{replicas: n, maxUnavailableZero: zero, mode: mode}
				logf("real node: rolling update of %d replicas, %s, %s", n, k.strategy(), mode)
				r, err := measureRollout(ctx, cs, k)
				if err != nil {
					return nil, fmt.Errorf("rolling update of %d replicas, %s, %s: %w", n, k.strategy(), mode, err)
				}
				logf("real node:   holders %s: %d changes, leaseTransitions +%d, %s", strings.Join(r.holders, " -> "), r.changes, r.transitions, r.took.Round(time.Millisecond))
				res.rollouts[k] = r
			}
		}
	}
	logf("real node: app failure, %d trials each with handover and with release-and-race", p.appFailureTrials)
	if res.appFailure, err = measureAppFailure(ctx, cs, p.appFailureTrials, logf); err != nil {
		return nil, fmt.Errorf("app failure: %w", err)
	}
	return res, nil
}

func modeName(handover bool) string {
	if handover {
		return "handover"
	}
	return "release-and-race"
}

// benchDeployment is config/samples' Deployment running the node's sample app, under another name (its own
// Lease), with the fast timings and the mode.
func benchDeployment(name string, replicas int, handover bool) (*appsv1.Deployment, error) {
	d, err := cluster.ReadManifest[*appsv1.Deployment]("config/samples/deployment.yaml")
	if err != nil {
		return nil, err
	}
	labels := map[string]string{"app.kubernetes.io/name": name}
	d.Name, d.Namespace, d.Labels = name, nodeNamespace, labels
	d.Spec.Replicas = ptr.To(int32(replicas))
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: labels}
	d.Spec.Template.Labels = labels
	for k, v := range nodeTimings {
		d.Spec.Template.Annotations[k] = v
	}
	if !handover {
		d.Spec.Template.Annotations[contract.AnnotationHandover] = "false" // release-and-race, as before issue 13
	}
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
	node.RunSampleApp(&d.Spec.Template)
	return d, nil
}

// measureRollout creates a Deployment of k, waits until it is complete and led, rolls it to a new pod template,
// counts the Lease's holders until the rollout is complete and led by a new pod, and deletes it.
func measureRollout(ctx context.Context, cs kubernetes.Interface, k rolloutKind) (*rolloutResult, error) {
	name := fmt.Sprintf("roll-%d-%s-%s", k.replicas, map[bool]string{false: "default", true: "surge"}[k.maxUnavailableZero], k.mode.short())
	d, err := benchDeployment(name, k.replicas, k.mode == modeHandover)
	if err != nil {
		return nil, err
	}
	if k.mode == modeToday {
		d.Spec.Template.Annotations[corev1.PodDeletionCost] = "0"
	}
	if k.maxUnavailableZero {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}}
	}
	if _, err := cs.AppsV1().Deployments(nodeNamespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	defer deleteDeployment(cs, name)
	if err := waitRolledOut(ctx, cs, name, k.replicas); err != nil {
		return nil, err
	}
	first, err := waitLedBy(ctx, cs, name, func(string) bool { return true })
	if err != nil {
		return nil, err
	}
	before, err := leaseTransitions(ctx, cs, name)
	if err != nil {
		return nil, err
	}
	w, err := watchHolders(ctx, cs, name)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	start := time.Now()
	if err := updateDeployment(ctx, cs, name, func(d *appsv1.Deployment) { d.Spec.Template.Annotations["bench/version"] = "2" }); err != nil {
		return nil, err
	}
	if err := waitRolledOut(ctx, cs, name, k.replicas); err != nil {
		return nil, err
	}
	newHash, err := currentHash(ctx, cs, name)
	if err != nil {
		return nil, err
	}
	last, err := waitLedBy(ctx, cs, name, func(holder string) bool { return strings.HasPrefix(holder, name+"-"+newHash+"-") })
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	after, err := leaseTransitions(ctx, cs, name)
	if err != nil {
		return nil, err
	}
	holders := w.holders(first)
	r := &rolloutResult{holders: holders, transitions: after - before, took: took,
		oldToNew: holders[0] == first && !strings.HasPrefix(first, name+"-"+newHash+"-") && holders[len(holders)-1] == last}
	prev := first
	for _, h := range holders[1:] {
		switch {
		case h == "":
			r.vacant++
		case h != prev:
			r.changes++
			prev = h
		}
	}
	for i, h := range r.holders {
		r.holders[i] = orNobody(h)
	}
	return r, nil
}

// measureAppFailure runs a Deployment of three with a Service per mode, fails the leader's app (its readiness
// endpoint, which the elector's app check also asks) and times the first answer from another pod through the
// Service's ClusterIP; then the app recovers and the next trial starts from a settled group.
func measureAppFailure(ctx context.Context, cs kubernetes.Interface, trials int, logf func(string, ...any)) (*appFailureResult, error) {
	res := &appFailureResult{served: map[string][]time.Duration{}, never: map[string]int{},
		staleAnswers: map[string]int{}, staleFor: map[string]time.Duration{}}
	for _, handover := range []bool{true, false} {
		name := "fail-" + map[bool]string{true: "handover", false: "race"}[handover]
		d, err := benchDeployment(name, 3, handover)
		if err != nil {
			return nil, err
		}
		if _, err := cs.AppsV1().Deployments(nodeNamespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		svc, err := cs.CoreV1().Services(nodeNamespace).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app.kubernetes.io/name": name, contract.LabelRole: contract.RoleLeader},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		err = func() error {
			defer deleteDeployment(cs, name)
			defer func() {
				_ = cs.CoreV1().Services(nodeNamespace).Delete(context.Background(), name, metav1.DeleteOptions{})
			}()
			if err := waitRolledOut(ctx, cs, name, 3); err != nil {
				return err
			}
			c := startClient("http://" + svc.Spec.ClusterIP + "/")
			defer c.stop()
			hw, err := watchHolders(ctx, cs, name)
			if err != nil {
				return err
			}
			defer hw.stop()
			for trial := range trials {
				leader, err := waitServing(ctx, cs, c, name)
				if err != nil {
					return err
				}
				pod, err := cs.CoreV1().Pods(nodeNamespace).Get(ctx, leader, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if res.detection, err = appCheckDetection(pod); err != nil {
					return err
				}
				failed := time.Now()
				if err := postApp(pod, "/unready"); err != nil {
					return err
				}
				var next string
				var at time.Time
				err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, res.detection+neverAfter, true, func(context.Context) (bool, error) {
					next, at = c.firstOtherThan(leader, failed)
					return next != "", nil
				})
				switch {
				case ctx.Err() != nil:
					return ctx.Err()
				case err != nil:
					res.never[modeName(handover)]++
					logf("real node:   %s trial %d: %s failing, no other replica answered within %s", modeName(handover), trial+1, leader, res.detection+neverAfter)
				default:
					mode := modeName(handover)
					res.served[mode] = append(res.served[mode], at.Sub(failed))
					left := hw.leftAfter(leader, failed)
					n, late := c.answersAfter(leader, left, at)
					res.staleAnswers[mode] += n
					res.staleFor[mode] = max(res.staleFor[mode], late)
					logf("real node:   %s trial %d: %s failing, Lease left it after %s, %s served after %s; %d answers from %s after the Lease left (the last %s after)",
						mode, trial+1, leader, left.Sub(failed).Round(time.Millisecond), next, at.Sub(failed).Round(time.Millisecond), n, leader, late.Round(time.Millisecond))
				}
				if err := postApp(pod, "/ready"); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// appCheckDetection is failureThreshold periods of the elector's app check (ELECTOR_APP_CHECK), the most it takes
// to call a failing app unhealthy.
func appCheckDetection(pod *corev1.Pod) (time.Duration, error) {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name != contract.ContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name != "ELECTOR_APP_CHECK" || e.Value == "" {
				continue
			}
			var probe corev1.Probe
			if err := json.Unmarshal([]byte(e.Value), &probe); err != nil {
				return 0, fmt.Errorf("pod %s: ELECTOR_APP_CHECK %q: %w", pod.Name, e.Value, err)
			}
			period, failures := probe.PeriodSeconds, probe.FailureThreshold
			if period == 0 {
				period = 10 // the kubelet's defaults
			}
			if failures == 0 {
				failures = 3
			}
			return time.Duration(period*failures) * time.Second, nil
		}
	}
	return 0, fmt.Errorf("pod %s: the webhook injected no app check (ELECTOR_APP_CHECK) though the app has a readinessProbe", pod.Name)
}

// postApp sends a request straight to the pod's app (its IP is on the node's bridge).
func postApp(pod *corev1.Pod, path string) error {
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Post("http://"+pod.Status.PodIP+":8080"+path, "text/plain", nil)
	if err != nil {
		return fmt.Errorf("POST %s to pod %s: %w", path, pod.Name, err)
	}
	return resp.Body.Close()
}

// serviceClient asks a Service every 20 ms, a new connection each time (kube-proxy picks the endpoint per
// connection), and records who answered.
type serviceClient struct {
	url     string
	mu      sync.Mutex
	answers []serviceAnswer
	cancel  context.CancelFunc
	done    chan struct{}
}

type serviceAnswer struct {
	sent, got time.Time
	pod       string
}

func startClient(url string) *serviceClient {
	ctx, cancel := context.WithCancel(context.Background())
	c := &serviceClient{url: url, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		hc := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			a := serviceAnswer{sent: time.Now()}
			if resp, err := hc.Get(c.url); err == nil {
				var body struct {
					Pod string `json:"pod"`
				}
				if json.NewDecoder(resp.Body).Decode(&body) == nil {
					a.pod = body.Pod
				}
				resp.Body.Close()
			}
			a.got = time.Now()
			c.mu.Lock()
			c.answers = append(c.answers, a)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *serviceClient) stop() { c.cancel(); <-c.done }

// firstOtherThan is the first pod other than pod that answered a request sent after since, and when.
func (c *serviceClient) firstOtherThan(pod string, since time.Time) (string, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.answers {
		if a.sent.After(since) && a.pod != "" && a.pod != pod {
			return a.pod, a.got
		}
	}
	return "", time.Time{}
}

// answersAfter counts pod's answers received after left and up to until, and how long after left the last came.
func (c *serviceClient) answersAfter(pod string, left, until time.Time) (int, time.Duration) {
	if left.IsZero() {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, late := 0, time.Duration(0)
	for _, a := range c.answers {
		if a.pod == pod && a.got.After(left) && !a.got.After(until) {
			n, late = n+1, a.got.Sub(left)
		}
	}
	return n, late
}

// lastAnswers are the pods that answered the last n requests.
func (c *serviceClient) lastAnswers(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i := max(0, len(c.answers)-n); i < len(c.answers); i++ {
		out = append(out, c.answers[i].pod)
	}
	return out
}

// waitServing waits until the Lease's holder answered the last ten requests, and returns it.
func waitServing(ctx context.Context, cs kubernetes.Interface, c *serviceClient, lease string) (string, error) {
	var holder string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoordinationV1().Leases(nodeNamespace).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		holder = ptr.Deref(l.Spec.HolderIdentity, "")
		last := c.lastAnswers(10)
		if holder == "" || len(last) < 10 {
			return false, nil
		}
		for _, p := range last {
			if p != holder {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the holder of Lease %s to serve its Service: %w (holder %q, last answers %v)", lease, err, holder, c.lastAnswers(10))
	}
	return holder, nil
}

// holderWatch records the holders of one Lease as a watch delivers them.
type holderWatch struct {
	mu   sync.Mutex
	seen []string
	at   []time.Time // when the watch delivered each of seen
	stop func()
}

func watchHolders(ctx context.Context, cs kubernetes.Interface, lease string) (*holderWatch, error) {
	w, err := cs.CoordinationV1().Leases(nodeNamespace).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", lease).String()})
	if err != nil {
		return nil, err
	}
	hw := &holderWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if l, ok := ev.Object.(*coordinationv1.Lease); ok {
				h := ptr.Deref(l.Spec.HolderIdentity, "")
				hw.mu.Lock()
				if len(hw.seen) == 0 || hw.seen[len(hw.seen)-1] != h {
					hw.seen, hw.at = append(hw.seen, h), append(hw.at, time.Now())
				}
				hw.mu.Unlock()
			}
		}
	}()
	hw.stop = func() { w.Stop(); <-done }
	return hw, nil
}

// leftAfter is when the watch first saw a holder other than pod after since; zero if it has not.
func (hw *holderWatch) leftAfter(pod string, since time.Time) time.Time {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	for i, h := range hw.seen {
		if h != pod && hw.at[i].After(since) {
			return hw.at[i]
		}
	}
	return time.Time{}
}

// holders is the sequence seen, starting with first (the holder before the watch started).
func (hw *holderWatch) holders(first string) []string {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	out := []string{first}
	for _, h := range hw.seen {
		if h != out[len(out)-1] {
			out = append(out, h)
		}
	}
	return out
}

func orNobody(s string) string {
	if s == "" {
		return "(nobody)"
	}
	return s
}

func leaseTransitions(ctx context.Context, cs kubernetes.Interface, name string) (int32, error) {
	l, err := cs.CoordinationV1().Leases(nodeNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	return ptr.Deref(l.Spec.LeaseTransitions, 0), nil
}

// waitLedBy waits until the Lease's holder is a running, ready pod of the Deployment accepted by ok.
func waitLedBy(ctx context.Context, cs kubernetes.Interface, name string, ok func(holder string) bool) (string, error) {
	var holder string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoordinationV1().Leases(nodeNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		holder = ptr.Deref(l.Spec.HolderIdentity, "")
		if holder == "" || !ok(holder) {
			return false, nil
		}
		p, err := cs.CoreV1().Pods(nodeNamespace).Get(ctx, holder, metav1.GetOptions{})
		return err == nil && p.DeletionTimestamp == nil && podReady(p), nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for a ready holder of Lease %s: %w (holder %q)", name, err, holder)
	}
	return holder, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// currentHash is the pod-template-hash of the Deployment's newest ReplicaSet: the one with its template.
func currentHash(ctx context.Context, cs kubernetes.Interface, name string) (string, error) {
	rsList, err := cs.AppsV1().ReplicaSets(nodeNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + name})
	if err != nil {
		return "", err
	}
	for _, rs := range rsList.Items {
		if rs.Spec.Template.Annotations["bench/version"] == "2" {
			return rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey], nil
		}
	}
	return "", fmt.Errorf("no ReplicaSet of Deployment %s has its new template", name)
}

func waitRolledOut(ctx context.Context, cs kubernetes.Interface, name string, replicas int) error {
	var last appsv1.DeploymentStatus
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(nodeNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = d.Status
		return cluster.RolledOut(d, int32(replicas)) && d.Status.ReadyReplicas == int32(replicas), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for Deployment %s to roll out %d replicas: %w (last status %+v)", name, replicas, err, last)
	}
	return nil
}

func updateDeployment(ctx context.Context, cs kubernetes.Interface, name string, change func(*appsv1.Deployment)) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(nodeNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		change(d)
		_, err = cs.AppsV1().Deployments(nodeNamespace).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, nil
	})
}

// deleteDeployment deletes a Deployment and waits until its pods are gone, so the next measurement has the node
// to itself.
func deleteDeployment(cs kubernetes.Interface, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cs.AppsV1().Deployments(nodeNamespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return
	}
	_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(nodeNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + name})
		return err == nil && len(pods.Items) == 0, nil
	})
}

// nodeRows are the real-node rows: leader changes per rolling update, ours (handover) against release-and-race,
// and the app failure.
func (r *results) nodeRows() []row {
	nr := r.node
	if nr == nil {
		return nil
	}
	var rows []row
	for _, n := range r.params.rolloutReplicas {
		for _, zero := range []bool{false, true} {
			o, b, today := nr.rollouts[rolloutKind{n, zero, modeHandover}], nr.rollouts[rolloutKind{n, zero, modeRelease}], nr.rollouts[rolloutKind{n, zero, modeToday}]
			if o == nil || b == nil || today == nil {
				continue
			}
			k := rolloutKind{replicas: n, maxUnavailableZero: zero}
			rows = append(rows, row{
				what: fmt.Sprintf("leader changes per rolling update of a real Deployment, N = %d, %s (baseline: release-and-race with the leader last; before issue 13, leader not last: %d; moments without a holder: ours %d, baseline %d, before %d)",
					n, k.strategy(), today.changes, o.vacant, b.vacant, today.vacant),
				baseline: fmt.Sprint(b.changes), ours: fmt.Sprint(o.changes), ratio: ratio(float64(o.changes), float64(b.changes)),
				target: "exactly 1, old pod to new, never vacant", met: verdict(o.changes == 1 && o.oldToNew && o.vacant == 0),
			})
		}
	}
	if a := nr.appFailure; a != nil {
		o, b := a.served[modeName(true)], a.served[modeName(false)]
		limit := a.detection + 500*time.Millisecond
		trials := len(o) + a.never[modeName(true)]
		show := func(samples []time.Duration, never int, q float64) string {
			if len(samples) == 0 || (q == 1 && never > 0) {
				return fmt.Sprintf("never (%d of %d trials: none within %s)", never, len(samples)+never, seconds(a.detection+neverAfter))
			}
			return seconds(percentile(samples, q))
		}
		for _, q := range []float64{0.5, 1} {
			name := "p50"
			if q == 1 {
				name = "max"
			}
			x := row{
				what: fmt.Sprintf("app failure -> a healthy replica serves the Service (label mode, real node), %s of %d trials; app check detection time %s (baseline: --handover=false, today's release-and-race); the old leader still answered %d times after the Lease left it, up to %s after",
					name, trials, a.detection, a.staleAnswers[modeName(true)], seconds(a.staleFor[modeName(true)])),
				baseline: show(b, a.never[modeName(false)], q), ours: show(o, a.never[modeName(true)], q), ratio: "–",
				target: "≤ detection + 0.5 s = " + seconds(limit),
			}
			if len(b) > 0 && a.never[modeName(false)] == 0 {
				x.ratio = ratio(percentile(o, q).Seconds(), percentile(b, q).Seconds())
			}
			x.met = verdict(len(o) > 0 && a.never[modeName(true)] == 0 && percentile(o, q) <= limit)
			rows = append(rows, x)
		}
	}
	return rows
}
