// Package e2e runs the product on a local cluster: the real Deployment, ReplicaSet, StatefulSet and EndpointSlice
// controllers, the webhook as the shipped configuration registers it, and electors run by a kubelet stand-in.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/controlplane"
)

// Short election timings keep the fault scenarios quick; the defaults are exercised by the demo.
var fastTimings = map[string]string{
	inject.AnnotationLeaseDuration: "4s",
	inject.AnnotationRenewDeadline: "2s",
	inject.AnnotationRetryPeriod:   "500ms",
}

func TestEndToEnd(t *testing.T) {
	binDir := t.TempDir()
	for _, cmd := range []string{"./cmd/webhook", "./cmd/elector"} {
		bin := controlplane.Build(t, cmd)
		if err := os.Rename(bin, filepath.Join(binDir, filepath.Base(cmd))); err != nil {
			t.Fatal(err)
		}
	}
	workDir := t.TempDir()
	c, err := cluster.Start(t.Context(), cluster.Options{BinDir: binDir, WorkDir: workDir, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			dumpLogs(t, workDir)
		}
	})
	cs := c.Clientset
	ns := "e2e"
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := startSampler(t, cs, ns)
	defer s.report(t)
	w := &world{t: t, cs: cs, c: c, ns: ns, s: s}

	w.createService("web", "web")
	w.createDeployment(deployment("web", 3, nil))

	t.Run("three replicas: every pod injected, one holder, exactly its endpoint ready", func(t *testing.T) {
		w.t = t
		holder := w.settled("web", "web", 3)
		pods := w.pods("app=web")
		for _, p := range pods {
			if !hasElector(&p) {
				t.Errorf("pod %s has no elector", p.Name)
			}
		}
		t.Logf("leader %s among %d pods", holder, len(pods))
		w.waitDeploymentComplete("web", 3)
	})

	t.Run("leader pod deleted: the endpoint moves to the new holder", func(t *testing.T) {
		w.t = t
		old := w.settled("web", "web", 3)
		start := time.Now()
		if err := cs.CoreV1().Pods(ns).Delete(t.Context(), old, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, at := s.waitReady(t, "web", 30*time.Second, "one endpoint other than "+old, func(r []string) bool {
			return len(r) == 1 && r[0] != old
		})
		t.Logf("leader pod %s deleted: endpoint switched after %s", old, at.Sub(start).Round(time.Millisecond))
		w.settled("web", "web", 3)
	})

	t.Run("leader's elector killed with SIGKILL: the endpoint follows the holder", func(t *testing.T) {
		w.t = t
		old := w.settled("web", "web", 3)
		pod := w.pod(old)
		pid := c.Kubelet.ElectorPID(pod.UID)
		if pid == 0 {
			t.Fatalf("no elector process for %s", old)
		}
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		s.waitReady(t, "web", 10*time.Second, "no endpoint while the leader's elector is dead", func(r []string) bool { return len(r) == 0 })
		holder := w.settled("web", "web", 3)
		_, at := s.waitReady(t, "web", 10*time.Second, "the holder's endpoint", func(r []string) bool { return slices.Equal(r, []string{holder}) })
		// The kubelet restarts a killed sidecar within a second; under the same pod name it may take its own
		// unexpired Lease back, or another replica takes it once it expires.
		t.Logf("elector of leader %s killed: endpoint on %s after %s (same pod: %v)", old, holder, at.Sub(start).Round(time.Millisecond), holder == old)
	})

	t.Run("leader's elector killed and kept down past the lease: the endpoint moves to another replica", func(t *testing.T) {
		w.t = t
		old := w.settled("web", "web", 3)
		start := time.Now()
		if !c.Kubelet.KillElector(w.pod(old).UID, 4*time.Second) {
			t.Fatalf("no elector process for %s", old)
		}
		_, at := s.waitReady(t, "web", 20*time.Second, "one endpoint other than "+old, func(r []string) bool {
			return len(r) == 1 && r[0] != old
		})
		t.Logf("elector of leader %s killed and held down: endpoint switched after %s", old, at.Sub(start).Round(time.Millisecond))
		if holder := w.settled("web", "web", 3); holder == old {
			t.Errorf("the killed leader %s leads again after its restart; another replica held a valid Lease", old)
		}
	})

	t.Run("leader paused longer than the lease: another leads, the paused one rejoins as standby", func(t *testing.T) {
		w.t = t
		old := w.settled("web", "web", 3)
		pid := c.Kubelet.ElectorPID(w.pod(old).UID)
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		_, at := s.waitReady(t, "web", 20*time.Second, "one endpoint other than "+old, func(r []string) bool {
			return len(r) == 1 && r[0] != old
		})
		t.Logf("leader %s paused: endpoint switched after %s", old, at.Sub(start).Round(time.Millisecond))
		time.Sleep(3 * time.Second) // longer than the 2s lease
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		holder := w.settled("web", "web", 3)
		if holder == old {
			t.Errorf("the paused leader %s leads again after resuming; another replica held a valid Lease", old)
		}
	})

	t.Run("rolling update with the default strategy completes", func(t *testing.T) {
		w.t = t
		w.rollout("web", "v2")
		w.waitDeploymentComplete("web", 3)
		w.settled("web", "web", 3)
	})

	t.Run("rolling update with maxUnavailable 0 completes", func(t *testing.T) {
		w.t = t
		w.updateDeployment("web", func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}}
		})
		w.waitDeploymentComplete("web", 3)
		w.rollout("web", "v3")
		w.waitDeploymentComplete("web", 3)
		w.settled("web", "web", 3)
	})

	t.Run("scale 3 to 1 to 3", func(t *testing.T) {
		w.t = t
		for _, n := range []int32{1, 3} {
			w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To(n) })
			w.waitDeploymentComplete("web", n)
			w.settled("web", "web", int(n))
		}
	})

	t.Run("traffic mode readiness: only the leader is ready", func(t *testing.T) {
		w.t = t
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "solo"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "solo"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		}
		if _, err := cs.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		w.createDeployment(deployment("solo", 3, map[string]string{inject.AnnotationTraffic: inject.TrafficReadiness}))
		holder := w.settled("solo", "solo", 3)
		w.poll(20*time.Second, "exactly one ready pod of solo", func(ctx context.Context) (bool, error) {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, "solo", metav1.GetOptions{})
			return err == nil && d.Status.Replicas == 3 && d.Status.ReadyReplicas == 1, err
		})
		t.Logf("readiness mode: %s is the only ready replica of 3 (the Deployment reports 1 available: the caveat of this mode)", holder)
	})

	t.Run("StatefulSet with OrderedReady reaches 3 ready replicas with one leader", func(t *testing.T) {
		w.t = t
		w.createService("queue", "queue")
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "queue", Namespace: ns},
			Spec: appsv1.StatefulSetSpec{
				Replicas: ptr.To[int32](3), ServiceName: "queue", PodManagementPolicy: appsv1.OrderedReadyPodManagement,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "queue"}},
				Template: podTemplate("queue", nil),
			},
		}
		if _, err := cs.AppsV1().StatefulSets(ns).Create(t.Context(), sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		w.poll(60*time.Second, "StatefulSet queue with 3 ready replicas", func(ctx context.Context) (bool, error) {
			got, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "queue", metav1.GetOptions{})
			return err == nil && got.Status.ReadyReplicas == 3 && got.Status.AvailableReplicas == 3, err
		})
		holder := w.settled("queue", "queue", 3)
		t.Logf("StatefulSet leader %s", holder)
	})
}

// world is the suite's shared state; t is the running subtest.
type world struct {
	t  *testing.T
	cs kubernetes.Interface
	c  *cluster.Cluster
	ns string
	s  *sampler
}

func podTemplate(app string, extra map[string]string) corev1.PodTemplateSpec {
	ann := map[string]string{inject.AnnotationEnabled: "true"}
	for k, v := range fastTimings {
		ann[k] = v
	}
	for k, v := range extra {
		ann[k] = v
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}, Annotations: ann},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			Containers: []corev1.Container{{Name: "app", Image: "example/" + app + ":v1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
		},
	}
}

func deployment(name string, replicas int32, extra map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, extra),
		},
	}
}

func (w *world) createDeployment(d *appsv1.Deployment) {
	w.t.Helper()
	if _, err := w.cs.AppsV1().Deployments(w.ns).Create(w.t.Context(), d, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// createService makes the Service that routes to the leader: the app's label plus leader-election/role=leader.
func (w *world) createService(name, app string) {
	w.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app, inject.LabelRole: inject.RoleLeader},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	if _, err := w.cs.CoreV1().Services(w.ns).Create(w.t.Context(), svc, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) updateDeployment(name string, change func(*appsv1.Deployment)) {
	w.t.Helper()
	w.poll(10*time.Second, "updating Deployment "+name, func(ctx context.Context) (bool, error) {
		d, err := w.cs.AppsV1().Deployments(w.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		change(d)
		_, err = w.cs.AppsV1().Deployments(w.ns).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, nil
	})
}

// rollout changes the pod template's image, which rolls every pod.
func (w *world) rollout(name, version string) {
	w.updateDeployment(name, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "example/" + name + ":" + version
	})
}

// waitDeploymentComplete waits for what `kubectl rollout status` waits for, plus Available=True and old
// ReplicaSets scaled to zero.
func (w *world) waitDeploymentComplete(name string, replicas int32) {
	w.t.Helper()
	start := time.Now()
	var last appsv1.DeploymentStatus
	w.poll(90*time.Second, fmt.Sprintf("Deployment %s complete with %d replicas", name, replicas), func(ctx context.Context) (bool, error) {
		d, err := w.cs.AppsV1().Deployments(w.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = d.Status
		if !cluster.RolledOut(d, replicas) || d.Status.ReadyReplicas != replicas {
			return false, nil
		}
		rss, err := w.cs.AppsV1().ReplicaSets(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err
		}
		for _, rs := range rss.Items {
			if rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != d.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] &&
				(rs.Status.Replicas != 0 && !isCurrent(&rs, d)) {
				return false, nil
			}
		}
		return true, nil
	}, func() string { return fmt.Sprintf("last status %+v", last) })
	w.t.Logf("Deployment %s: %d/%d available and updated after %s", name, replicas, replicas, time.Since(start).Round(time.Millisecond))
}

func isCurrent(rs *appsv1.ReplicaSet, d *appsv1.Deployment) bool {
	return rs.Annotations["deployment.kubernetes.io/revision"] == d.Annotations["deployment.kubernetes.io/revision"]
}

// settled waits until the Lease has a holder among `replicas` running pods of app, and the Service's only ready
// endpoint is that holder; it returns the holder.
func (w *world) settled(lease, app string, replicas int) string {
	w.t.Helper()
	var holder string
	var why string
	w.poll(60*time.Second, "a settled leader", func(ctx context.Context) (bool, error) {
		l, err := w.cs.CoordinationV1().Leases(w.ns).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		holder = ptr.Deref(l.Spec.HolderIdentity, "")
		running := 0
		holderRuns := false
		for _, p := range w.pods("app=" + app) {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				running++
				holderRuns = holderRuns || p.Name == holder
			}
		}
		ready := w.s.Ready(app)
		why = fmt.Sprintf("holder %q, %d running pods, ready endpoints %v", holder, running, ready)
		return holderRuns && running == replicas && slices.Equal(ready, []string{holder}), nil
	}, func() string { return why })
	return holder
}

func (w *world) pods(selector string) []corev1.Pod {
	w.t.Helper()
	list, err := w.cs.CoreV1().Pods(w.ns).List(w.t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		w.t.Fatal(err)
	}
	return list.Items
}

func (w *world) pod(name string) *corev1.Pod {
	w.t.Helper()
	p, err := w.cs.CoreV1().Pods(w.ns).Get(w.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return p
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

func hasElector(p *corev1.Pod) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == inject.ContainerName && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return true
		}
	}
	return false
}

// dumpLogs prints the processes' logs of a failed run.
func dumpLogs(t *testing.T, dir string) {
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Ext(path) != ".log" {
			return nil
		}
		data, _ := os.ReadFile(path)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		t.Logf("--- %s (tail)\n%s", path, data)
		return nil
	})
}
