// Package e2e runs the product on a real node: etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
// a kubelet with containerd and runc, kube-proxy, the webhook installed from the chart with helm, and the sample
// application in real containers with the injected elector as a native sidecar. A client asks the Service's
// ClusterIP every few tens of milliseconds for the whole suite; no answer may come from a pod that was not the
// leader at that moment.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/elector"
	"github.com/leader-election/leader-election/pkg/leaderlabel"
	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/node"
)

const (
	ns       = "e2e"
	app      = "sample" // config/samples' Deployment, Service and ServiceAccount
	appLabel = "app.kubernetes.io/name"
)

// fastTimings keep the fault scenarios quick: the fastest the timing rules accept (lease - renew >= 2s).
var fastTimings = map[string]string{
	contract.AnnotationLeaseDuration: "4s",
	contract.AnnotationRenewDeadline: "2s",
	contract.AnnotationRetryPeriod:   "500ms",
}

// TestEndToEnd runs the whole suite with the chart's default admission mode, the mutating webhook.
func TestEndToEnd(t *testing.T) { suite(t, "webhook") }

// TestEndToEndPolicyMode installs the chart with admission.mode=policy (MutatingAdmissionPolicies inject, the
// manager runs without an admission server) and runs the scenarios that exercise injection and binding: pods of a
// Deployment and a StatefulSet, a bare pod, pods replaced by deletion and by a rollout. The fault scenarios test
// the elector, which is the same in both modes; they run in TestEndToEnd only, to keep the added time small.
func TestEndToEndPolicyMode(t *testing.T) { suite(t, "policy") }

// policyModeScenarios are the scenarios TestEndToEndPolicyMode runs.
var policyModeScenarios = []string{
	scenarioInjected, scenarioLeaderDeleted, scenarioNewDeployment, scenarioBarePod, scenarioManagerDown, scenarioRollout, scenarioStatefulSet,
}

const (
	scenarioInjected      = "three replicas: every pod injected from the chart's admission mode, one leader serves"
	scenarioLeaderDeleted = "leader pod deleted: the app stops before the elector, the Lease leaves it only after the app exited"
	scenarioNewDeployment = "a new Deployment with a new ServiceAccount: bound, then its elector leads"
	scenarioBarePod       = "a bare pod with a new ServiceAccount: bound once stored, then its elector leads"
	scenarioManagerDown   = "policy mode, manager down: a bare pod is still injected, its elector retries after 403 until the manager binds it"
	scenarioRollout       = "rolling update with the default strategy: the leader changes once, from an old pod to a new one"
	scenarioStatefulSet   = "StatefulSet with OrderedReady: 3 ready replicas, its own Service answered by its leader"
)

// suite installs the chart in admission mode mode on a real node and runs the scenarios.
func suite(t *testing.T, mode string) {
	n := startNode(t)
	start := time.Now()
	if err := n.InstallChart(t.Context(), "admission.mode="+mode); err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install of charts/leader-election, admission mode %s: manager ready after %s", mode, time.Since(start).Round(100*time.Millisecond))
	cs := n.Clientset
	checkAdmissionMode(t, cs, mode)
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := startSampler(t, cs, ns)
	defer s.report(t)
	w := &world{t: t, cs: cs, n: n}
	svc := w.applySample()
	tr := startTraffic(t, cs, ns, app, app, svc.Spec.ClusterIP)
	w.tr = tr
	var windows []window
	scenario := func(name string, f func(t *testing.T)) {
		if mode == "policy" && !slices.Contains(policyModeScenarios, name) {
			return
		}
		start := time.Now()
		ok := t.Run(name, func(t *testing.T) { w.t = t; f(t) })
		win := tr.summarize(name, start, time.Now())
		windows = append(windows, win)
		if len(win.wrongPod) > 0 {
			t.Errorf("%s: answers from a pod that was not the leader:\n  %s", name, strings.Join(win.wrongPod, "\n  "))
		}
		if len(win.selfDenied) > 0 {
			t.Logf("%s: %d answers from the Lease holder while its own elector said it was not leading (its last renewal older than the renew deadline); first: %s",
				name, len(win.selfDenied), win.selfDenied[0])
		}
		if !ok {
			t.FailNow()
		}
	}
	defer func() {
		total := tr.summarize("whole suite", tr.firstSent(), time.Now())
		var b strings.Builder
		fmt.Fprintf(&b, "Service %s via kube-proxy (ClusterIP %s), a request every %s, in-flight window %s:\n", app, svc.Spec.ClusterIP, requestEvery, inFlight)
		for _, win := range append(windows, total) {
			fmt.Fprintf(&b, "  %s\n", win)
		}
		t.Log(b.String())
	}()

	scenario(scenarioInjected, func(t *testing.T) {
		holder := w.settled(3)
		for _, p := range w.pods() {
			if !hasElector(&p) {
				t.Errorf("pod %s has no native-sidecar elector", p.Name)
			}
		}
		w.waitDeletionCostOn(holder)
		t.Logf("leader %s, with %s=%s; Service answered by it", holder, leaderlabel.DeletionCostAnnotation, leaderlabel.LeaderDeletionCost)
	})

	scenario(scenarioLeaderDeleted, func(t *testing.T) {
		old := w.settled(3)
		pod := w.pod(old)
		appID, electorID := containerID(pod, "app"), containerID(pod, contract.ContainerName)
		deleted := time.Now()
		if err := cs.CoreV1().Pods(ns).Delete(t.Context(), old, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		w.poll(60*time.Second, "pod "+old+" gone", func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Pods(ns).Get(ctx, old, metav1.GetOptions{})
			return err != nil, nil
		})
		appExit, electorExit := w.exitOf(appID, "app of "+old), w.exitOf(electorID, "elector of "+old)
		released := tr.firstHolderOtherThan(old, deleted)
		t.Logf("runtime events: app exited %s after the delete, elector %s after; Lease left %s at +%s",
			appExit.Sub(deleted).Round(time.Millisecond), electorExit.Sub(deleted).Round(time.Millisecond), old, released.Sub(deleted).Round(time.Millisecond))
		if !appExit.Before(electorExit) {
			t.Errorf("the elector (exit %s) stopped before the app (exit %s): the native sidecar must outlive the app", electorExit.Format(time.StampMilli), appExit.Format(time.StampMilli))
		}
		if released.IsZero() || released.Before(appExit) {
			t.Errorf("the Lease left %s at %s, before its app exited at %s", old, released.Format(time.StampMilli), appExit.Format(time.StampMilli))
		}
		holder := w.settled(3)
		if holder == old {
			t.Errorf("deleted pod %s still leads", old)
		}
	})

	scenario("leader's elector container killed (SIGKILL): the kubelet restarts it, one leader serves", func(t *testing.T) {
		old := w.settled(3)
		pod := w.pod(old)
		restarts := restartCount(pod, contract.ContainerName)
		pid := w.taskPID(pod, contract.ContainerName)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		w.exitOf(containerID(pod, contract.ContainerName), "killed elector of "+old)
		w.poll(60*time.Second, "the elector of "+old+" restarted", func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, old, metav1.GetOptions{})
			return err == nil && restartCount(p, contract.ContainerName) > restarts && containerID(p, contract.ContainerName) != "", nil
		})
		holder := w.settled(3)
		t.Logf("elector of %s killed; leader now %s (same pod: %v)", old, holder, holder == old)
	})

	scenario("leader's elector paused past the lease: another leads, the paused one rejoins as standby", func(t *testing.T) {
		old := w.settled(3)
		pid := w.taskPID(w.pod(old), contract.ContainerName)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		w.poll(30*time.Second, "another holder while "+old+" is paused", func(ctx context.Context) (bool, error) {
			return w.holder(ctx) != old && w.holder(ctx) != "", nil
		})
		time.Sleep(2 * time.Second) // the paused one stays down well past its 4s lease
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if holder := w.settled(3); holder == old {
			t.Errorf("the paused leader %s leads again after resuming; another replica held a valid Lease", old)
		}
	})

	scenario("leader's app container crashes: the kubelet restarts it, one leader serves", func(t *testing.T) {
		old := w.settled(3)
		pod := w.pod(old)
		restarts := restartCount(pod, "app")
		w.postToPod(pod, "/crash")
		w.exitOf(containerID(pod, "app"), "crashed app of "+old)
		w.poll(60*time.Second, "the app of "+old+" restarted", func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, old, metav1.GetOptions{})
			return err == nil && restartCount(p, "app") > restarts, nil
		})
		holder := w.settled(3)
		// With the app check, the crash fails it and the Lease may move before the app is back.
		t.Logf("app of leader %s crashed and was restarted by the kubelet; leader now %s", old, holder)
	})

	scenario("leader's app fails its readiness check: the Lease and the Service move to a healthy replica", func(t *testing.T) {
		old := w.settled(3)
		pod := w.pod(old)
		detection := w.appCheckDetection(pod)
		failed := time.Now()
		w.postToPod(pod, "/unready")
		var next string
		var served time.Time
		w.poll(detection+30*time.Second, "an answer from a replica other than "+old, func(context.Context) (bool, error) {
			next, served = tr.firstAnswerOtherThan(old, failed)
			return next != "", nil
		})
		moved := tr.firstHolderOtherThan(old, failed)
		t.Logf("app of leader %s failing from %s; Lease moved at +%s; first answer from the new leader %s at +%s; the app check's detection time %s, so the goal is <= %s",
			old, failed.Format("15:04:05.000"), moved.Sub(failed).Round(time.Millisecond), next, served.Sub(failed).Round(time.Millisecond),
			detection, detection+elector.ServiceLeaveTime+500*time.Millisecond)
		// The old leader leaves the Service (its /readyz fails) and hands the Lease over elector.ServiceLeaveTime
		// later: its last answer must come before the Lease moved. How long before is the wait's margin.
		lastOld := tr.lastAnswerFrom(old, failed)
		t.Logf("old leader %s last answered at +%s, %s before the Lease moved (it left the Service %s before the move)",
			old, lastOld.Sub(failed).Round(time.Millisecond), moved.Sub(lastOld).Round(time.Millisecond), elector.ServiceLeaveTime)
		if holder := w.holder(t.Context()); holder == old {
			t.Errorf("the Lease is back with %s while its app still fails its check", old)
		}
		w.postToPod(pod, "/ready")
		w.settled(3)
	})

	scenario("leader steps down on its control socket: it leaves the Service before the Lease moves", func(t *testing.T) {
		old := w.settled(3)
		pid := w.taskPID(w.pod(old), contract.ContainerName)
		asked := time.Now()
		// The control socket is an abstract Unix socket, scoped to the pod's network namespace: ask from inside it.
		out, err := exec.CommandContext(t.Context(), "nsenter", "-t", strconv.Itoa(pid), "-n", "curl", "-sS", "-m", "15",
			"--abstract-unix-socket", "leader-election", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}", "http://localhost/stepdown").CombinedOutput()
		answered := time.Now()
		if err != nil || strings.TrimSpace(string(out)) != "200" {
			t.Fatalf("step-down on the control socket of %s: %q %v", old, out, err)
		}
		var next string
		var served time.Time
		w.poll(30*time.Second, "an answer from a replica other than "+old, func(context.Context) (bool, error) {
			next, served = tr.firstAnswerOtherThan(old, asked)
			return next != "", nil
		})
		// Its app stays healthy: only the elector's /readyz takes the pod out of the Service, so the old leader's
		// last answer measures what the wait (elector.ServiceLeaveTime) must cover on this node.
		moved, lastOld := tr.firstHolderOtherThan(old, asked), tr.lastAnswerFrom(old, asked)
		t.Logf("step-down of %s: answered after %s; its last answer through the Service at +%s; the Lease moved at +%s; first answer from %s at +%s",
			old, answered.Sub(asked).Round(time.Millisecond), lastOld.Sub(asked).Round(time.Millisecond), moved.Sub(asked).Round(time.Millisecond),
			next, served.Sub(asked).Round(time.Millisecond))
		if moved.Sub(asked) < elector.ServiceLeaveTime {
			t.Errorf("the Lease moved %s after the step-down request, before the leader had been out of the Service for %s", moved.Sub(asked), elector.ServiceLeaveTime)
		}
		w.settled(3)
	})

	scenario(scenarioNewDeployment, func(t *testing.T) { w.bindingGap(t, "fresh", true) })
	scenario(scenarioBarePod, func(t *testing.T) { w.bindingGap(t, "bare", false) })
	if mode == "policy" {
		scenario(scenarioManagerDown, func(t *testing.T) { w.managerDown(t) })
	}

	scenario(scenarioRollout, func(t *testing.T) {
		w.oneLeaderChange("v2")
	})

	scenario("rolling update with maxUnavailable 0: the leader changes once, from an old pod to a new one", func(t *testing.T) {
		w.updateDeployment(func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}}
		})
		w.waitDeploymentComplete(3)
		w.settled(3)
		w.oneLeaderChange("v3")
	})

	scenario("scale 3 to 1 to 3: the ReplicaSet keeps the leader (its deletion cost)", func(t *testing.T) {
		leader := w.settled(3)
		for _, r := range []int32{1, 3} {
			w.updateDeployment(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To(r) })
			w.waitDeploymentComplete(r)
			if got := w.settled(int(r)); got != leader {
				t.Errorf("after scaling to %d the leader is %s, want %s: the ReplicaSet deleted the pod with the highest deletion cost", r, got, leader)
			}
		}
	})

	scenario(scenarioStatefulSet, func(t *testing.T) {
		qsvc := w.createService("queue", "queue")
		tmpl := w.sampleTemplate()
		tmpl.Labels = map[string]string{appLabel: "queue"}
		tmpl.Spec.ServiceAccountName = app
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "queue", Namespace: ns},
			Spec: appsv1.StatefulSetSpec{
				Replicas: ptr.To[int32](3), ServiceName: "queue", PodManagementPolicy: appsv1.OrderedReadyPodManagement,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{appLabel: "queue"}},
				Template: tmpl,
			},
		}
		if _, err := cs.AppsV1().StatefulSets(ns).Create(t.Context(), sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		w.poll(120*time.Second, "StatefulSet queue with 3 ready replicas", func(ctx context.Context) (bool, error) {
			got, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "queue", metav1.GetOptions{})
			return err == nil && got.Status.ReadyReplicas == 3 && got.Status.AvailableReplicas == 3, err
		})
		var holder, answered string
		w.poll(30*time.Second, "the queue Service answered by the queue Lease's holder", func(ctx context.Context) (bool, error) {
			l, err := cs.CoordinationV1().Leases(ns).Get(ctx, "queue", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			holder = ptr.Deref(l.Spec.HolderIdentity, "")
			answered = askOnce("http://" + qsvc.Spec.ClusterIP + "/")
			return holder != "" && answered == holder, nil
		}, func() string { return fmt.Sprintf("holder %q, answered by %q", holder, answered) })
		t.Logf("StatefulSet leader %s answers its Service", holder)
	})
}

// world is the suite's shared state; t is the running subtest.
type world struct {
	t  *testing.T
	cs kubernetes.Interface
	n  *node.Node
	tr *traffic
}

// sampleTemplate is config/samples' pod template running the sample app (test/node/app) instead of the image
// the sample names, which cannot be pulled here, with the fast election timings.
func (w *world) sampleTemplate() corev1.PodTemplateSpec {
	d, err := cluster.ReadManifest[*appsv1.Deployment]("config/samples/deployment.yaml")
	if err != nil {
		w.t.Fatal(err)
	}
	tmpl := d.Spec.Template
	for k, v := range fastTimings {
		tmpl.Annotations[k] = v
	}
	tmpl.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
	node.RunSampleApp(&tmpl)
	return tmpl
}

// applySample creates config/samples' ServiceAccount, Deployment (with sampleTemplate) and Service.
func (w *world) applySample() *corev1.Service {
	w.t.Helper()
	ctx := w.t.Context()
	sa, err := cluster.ReadManifest[*corev1.ServiceAccount]("config/samples/serviceaccount.yaml")
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	w.waitInjecting()
	d, err := cluster.ReadManifest[*appsv1.Deployment]("config/samples/deployment.yaml")
	if err != nil {
		w.t.Fatal(err)
	}
	d.Spec.Template = w.sampleTemplate()
	if _, err := w.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	svc, err := cluster.ReadManifest[*corev1.Service]("config/samples/service.yaml")
	if err != nil {
		w.t.Fatal(err)
	}
	created, err := w.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return created
}

// createService makes a Service like the sample's for another app: its label plus leader-election/role=leader.
func (w *world) createService(name, appName string) *corev1.Service {
	w.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{appLabel: appName, contract.LabelRole: contract.RoleLeader},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	created, err := w.cs.CoreV1().Services(ns).Create(w.t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return created
}

func (w *world) updateDeployment(change func(*appsv1.Deployment)) {
	w.t.Helper()
	w.poll(10*time.Second, "updating Deployment "+app, func(ctx context.Context) (bool, error) {
		d, err := w.cs.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		change(d)
		_, err = w.cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, nil
	})
}

// rollout changes the pod template, which rolls every pod.
func (w *world) rollout(version string) {
	w.updateDeployment(func(d *appsv1.Deployment) { d.Spec.Template.Annotations["e2e/version"] = version })
}

// waitDeploymentComplete waits for what `kubectl rollout status` waits for, plus Available=True.
func (w *world) waitDeploymentComplete(replicas int32) {
	w.t.Helper()
	start := time.Now()
	var last appsv1.DeploymentStatus
	w.poll(3*time.Minute, fmt.Sprintf("Deployment %s complete with %d replicas", app, replicas), func(ctx context.Context) (bool, error) {
		d, err := w.cs.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = d.Status
		return cluster.RolledOut(d, replicas) && d.Status.ReadyReplicas == replicas, nil
	}, func() string { return fmt.Sprintf("last status %+v", last) })
	w.t.Logf("Deployment %s: %d/%d available and updated after %s", app, replicas, replicas, time.Since(start).Round(time.Millisecond))
}

// oneLeaderChange rolls the Deployment to a new pod template and checks, from the suite's Lease watch, that the
// holder changed exactly once during the rollout, from a pod of the old ReplicaSet to a pod of the new one, with
// no moment without a holder in between.
func (w *world) oneLeaderChange(version string) {
	w.t.Helper()
	old := w.settled(3)
	oldRevision := revisionOf(w.pod(old))
	before, start := w.transitions(), time.Now()
	w.rollout(version)
	w.waitDeploymentComplete(3)
	leader := w.settled(3)
	newRevision := revisionOf(w.pod(leader))
	holders := w.tr.holdersBetween(start, time.Now())
	w.t.Logf("Lease holders during the rollout (from the watch): %s; leaseTransitions +%d", strings.Join(holders, " -> "), w.transitions()-before)
	if len(holders) != 2 || holders[0] != old || holders[1] != leader {
		w.t.Errorf("the Lease changed hands %d times during the rollout (%s), want once, from %s to the new leader", len(holders)-1, strings.Join(holders, " -> "), old)
	}
	if newRevision == oldRevision || !strings.HasPrefix(leader, app+"-"+newRevision+"-") || !strings.HasPrefix(old, app+"-"+oldRevision+"-") {
		w.t.Errorf("the Lease went from %s (pod-template-hash %s) to %s (%s), want from the old revision to the new one", old, oldRevision, leader, newRevision)
	}
}

// appCheckDetection is how long the elector's app check (ELECTOR_APP_CHECK, injected by the webhook from the app
// container's readinessProbe) takes at most to call a failing app unhealthy: failureThreshold periods.
func (w *world) appCheckDetection(pod *corev1.Pod) time.Duration {
	w.t.Helper()
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		if c.Name != contract.ContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name != "ELECTOR_APP_CHECK" || e.Value == "" {
				continue
			}
			var probe corev1.Probe
			if err := json.Unmarshal([]byte(e.Value), &probe); err != nil {
				w.t.Fatalf("pod %s: ELECTOR_APP_CHECK %q: %v", pod.Name, e.Value, err)
			}
			period, failures := probe.PeriodSeconds, probe.FailureThreshold
			if period == 0 {
				period = 10 // the kubelet's defaults
			}
			if failures == 0 {
				failures = 3
			}
			return time.Duration(period*failures) * time.Second
		}
	}
	w.t.Fatalf("pod %s: the webhook injected no app check (ELECTOR_APP_CHECK) into the elector, though the app has a readinessProbe", pod.Name)
	return 0
}

// waitDeletionCostOn waits until the pod carries the leader-label controller's deletion cost.
func (w *world) waitDeletionCostOn(name string) {
	w.t.Helper()
	var got map[string]string
	w.poll(10*time.Second, "the deletion cost on "+name, func(ctx context.Context) (bool, error) {
		p, err := w.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = p.Annotations
		return got[leaderlabel.DeletionCostAnnotation] == leaderlabel.LeaderDeletionCost && got[leaderlabel.DeletionCostManagedAnnotation] == "true", nil
	}, func() string { return fmt.Sprintf("annotations %v", got) })
}

// revisionOf is the pod's pod-template-hash: which ReplicaSet of the Deployment made it.
func revisionOf(p *corev1.Pod) string { return p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] }

func (w *world) holder(ctx context.Context) string {
	l, err := w.cs.CoordinationV1().Leases(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

func (w *world) transitions() int32 {
	l, err := w.cs.CoordinationV1().Leases(ns).Get(w.t.Context(), app, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return ptr.Deref(l.Spec.LeaseTransitions, 0)
}

// settled waits until the Lease's holder is one of `replicas` running, ready pods and the last requests to the
// Service were all answered by it; it returns the holder.
func (w *world) settled(replicas int) string {
	w.t.Helper()
	var holder, why string
	w.poll(90*time.Second, "a settled leader serving the Service", func(ctx context.Context) (bool, error) {
		holder = w.holder(ctx)
		ready, holderReady, injected := 0, false, 0
		for _, p := range w.pods() {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
				ready++
				holderReady = holderReady || p.Name == holder
			}
			if hasElector(&p) {
				injected++
			}
		}
		last := w.tr.lastAnswers(5)
		why = fmt.Sprintf("holder %q, %d ready pods, %d with an elector, last answers %q", holder, ready, injected, last)
		return holder != "" && holderReady && ready == replicas && len(last) == 5 &&
			slices.IndexFunc(last, func(p string) bool { return p != holder }) < 0, nil
	}, func() string { return why })
	return holder
}

func (w *world) pods() []corev1.Pod {
	w.t.Helper()
	list, err := w.cs.CoreV1().Pods(ns).List(w.t.Context(), metav1.ListOptions{LabelSelector: appLabel + "=" + app})
	if err != nil {
		w.t.Fatal(err)
	}
	return list.Items
}

func (w *world) pod(name string) *corev1.Pod {
	w.t.Helper()
	p, err := w.cs.CoreV1().Pods(ns).Get(w.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// taskPID is the host PID of a container of the pod, from the container runtime.
func (w *world) taskPID(pod *corev1.Pod, container string) int {
	w.t.Helper()
	id := containerID(pod, container)
	if id == "" {
		w.t.Fatalf("pod %s has no running %s container", pod.Name, container)
	}
	pid, err := w.n.TaskPID(id)
	if err != nil {
		w.t.Fatal(err)
	}
	return pid
}

// exitOf waits for the runtime's exit event of a container and returns its time.
func (w *world) exitOf(id, what string) time.Time {
	w.t.Helper()
	var at time.Time
	w.poll(10*time.Second, "the runtime's exit event of the "+what, func(context.Context) (bool, error) {
		exits := w.n.Events.Exits(id)
		if len(exits) == 0 {
			return false, nil
		}
		at = exits[len(exits)-1].At
		return true, nil
	})
	return at
}

// postToPod sends a request straight to a pod's app (its pod IP is on the node's bridge).
func (w *world) postToPod(pod *corev1.Pod, path string) {
	w.t.Helper()
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Post("http://"+pod.Status.PodIP+":8080"+path, "text/plain", nil)
	if err == nil {
		resp.Body.Close()
	}
	// /crash exits before it answers; the restart count tells whether it worked.
}

func (w *world) poll(timeout time.Duration, what string, cond wait.ConditionWithContextFunc, detail ...func() string) {
	w.t.Helper()
	if err := wait.PollUntilContextTimeout(w.t.Context(), 50*time.Millisecond, timeout, true, cond); err != nil {
		msg := ""
		for _, d := range detail {
			msg += " (" + d() + ")"
		}
		w.t.Fatalf("waiting %s for %s: %v%s", timeout, what, err, msg)
	}
}

// askOnce asks a URL once and returns the answering pod, or "".
func askOnce(url string) string {
	tr := &traffic{url: url}
	return tr.ask(&http.Client{Timeout: requestTimeout, Transport: &http.Transport{DisableKeepAlives: true}}).pod
}

func containerID(pod *corev1.Pod, name string) string {
	for _, s := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if s.Name == name && s.State.Running != nil {
			return s.ContainerID
		}
	}
	return ""
}

func restartCount(pod *corev1.Pod, name string) int32 {
	for _, s := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if s.Name == name {
			return s.RestartCount
		}
	}
	return 0
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasElector(p *corev1.Pod) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == contract.ContainerName && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return true
		}
	}
	return false
}
