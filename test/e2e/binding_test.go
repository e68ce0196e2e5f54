package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/test/node"
)

// checkAdmissionMode checks what the chart installed for the mode: a MutatingWebhookConfiguration and a manager
// serving admission in mode webhook; neither in mode policy.
func checkAdmissionMode(t *testing.T, cs kubernetes.Interface, mode string) {
	t.Helper()
	ctx := t.Context()
	mwcs, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cs.AppsV1().Deployments(node.WebhookNamespace).Get(ctx, managerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	switch mode {
	case "policy":
		if len(mwcs.Items) != 0 || !slices.Contains(args, "--admission=false") {
			t.Fatalf("admission mode policy: %d MutatingWebhookConfigurations, manager args %v; want none and --admission=false", len(mwcs.Items), args)
		}
	default:
		if len(mwcs.Items) != 1 || slices.Contains(args, "--admission=false") {
			t.Fatalf("admission mode webhook: %d MutatingWebhookConfigurations, manager args %v; want one and admission served", len(mwcs.Items), args)
		}
	}
}

// waitInjecting waits until the API server injects the elector into an annotated pod of the sample's (a dry run):
// the chart's admission objects take effect only once the API server's informers have seen them, which `helm
// install --wait` does not wait for. In policy mode that is the admission policies' next refresh (every second,
// later on a loaded machine): a Deployment created before it ran its pods without an elector, and the suite
// waited in vain for a Lease holder.
func (w *world) waitInjecting() {
	w.t.Helper()
	tmpl := w.sampleTemplate()
	probe := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	probe.Name, probe.Namespace = "admission-probe", ns
	probe.Annotations[contract.AnnotationLeaseName] = "admission-probe"
	start := time.Now()
	var last string
	w.poll(60*time.Second, "the API server to inject the elector into an annotated pod", func(ctx context.Context) (bool, error) {
		got, err := w.cs.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = "admitted without an elector"
		return hasElector(got), nil
	}, func() string { return "last answer: " + last })
	w.t.Logf("annotated pods injected (after %s of dry runs)", time.Since(start).Round(time.Millisecond))
}

// bindingGap creates a workload (a one-replica Deployment, or a bare pod) running as a ServiceAccount nothing has
// bound yet, and measures what the elector's retry path covers: from the creation to the Role that lets the
// account hold the Lease, to the pod, to the first Lease write that made the pod its holder. It reports the
// elector's refused Lease writes on the way. Every workload is deleted at the end.
func (w *world) bindingGap(t *testing.T, name string, deployment bool) {
	ctx := t.Context()
	cs := w.cs
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tmpl := w.sampleTemplate()
	tmpl.Labels = map[string]string{appLabel: name}
	tmpl.Spec.ServiceAccountName = name
	created := time.Now()
	if deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: tmpl,
		}}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.AppsV1().Deployments(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	} else {
		tmpl.Annotations[contract.AnnotationLeaseName] = name
		pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
		pod.Name, pod.Namespace = name, ns
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}

	// Poll every 10 ms: the figures are the first time each state was seen, to that resolution.
	var bound, podSeen, held time.Time
	var holder string
	w.poll(90*time.Second, "the new workload's elector holding its Lease", func(ctx context.Context) (bool, error) {
		now := time.Now()
		if bound.IsZero() {
			if r, err := cs.RbacV1().Roles(ns).Get(ctx, binding.LeaseRoleName(name), metav1.GetOptions{}); err == nil &&
				len(r.Rules) == 1 && slices.Contains(r.Rules[0].ResourceNames, name) {
				if _, err := cs.RbacV1().RoleBindings(ns).Get(ctx, binding.LeaseRoleName(name), metav1.GetOptions{}); err == nil {
					bound = now
				}
			}
		}
		if podSeen.IsZero() {
			if pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=" + name}); err == nil && len(pods.Items) > 0 {
				podSeen = now
			}
		}
		if l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{}); err == nil && ptr.Deref(l.Spec.HolderIdentity, "") != "" {
			held, holder = now, *l.Spec.HolderIdentity
		}
		return !held.IsZero() && !bound.IsZero(), nil
	})
	pod := w.pod(holder)
	if !hasElector(pod) {
		t.Errorf("pod %s holds Lease %s without an injected elector", holder, name)
	}
	refused, started := electorMetrics(t, pod)
	kind := map[bool]string{true: "Deployment (1 replica)", false: "bare pod"}[deployment]
	if !deployment {
		podSeen = created // the pod is the workload
	}
	t.Logf("binding gap, %s: created -> Role and RoleBinding present %s, -> first pod seen %s, -> elector process started %s, -> elector holds the Lease %s; elector start -> holder %s (bound %s before the elector started); the elector's failed Lease API calls: %s",
		kind, ms(bound.Sub(created)), ms(podSeen.Sub(created)), ms(started.Sub(created)), ms(held.Sub(created)), ms(held.Sub(started)), ms(started.Sub(bound)), refused)
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// electorMetrics reads the elector's failed Lease API calls by reason and its process's start time (10 ms clock
// ticks, this machine's clock) from its metrics endpoint.
func electorMetrics(t *testing.T, pod *corev1.Pod) (leaseErrors string, started time.Time) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + pod.Status.PodIP + ":" + strconv.Itoa(inject.DefaultPort) + "/metrics")
	if err != nil {
		t.Fatalf("the elector's metrics: %v", err)
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "leader_election_api_errors_total{") && strings.Contains(line, `resource="leases"`) {
			out = append(out, strings.TrimPrefix(line, "leader_election_api_errors_total"))
		}
		if v, ok := strings.CutPrefix(line, "process_start_time_seconds "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("process_start_time_seconds %q: %v", v, err)
			}
			started = time.Unix(0, int64(f*1e9))
		}
	}
	if started.IsZero() {
		t.Fatalf("the elector's metrics lack process_start_time_seconds")
	}
	if len(out) == 0 {
		return "none", started
	}
	return strings.Join(out, ", "), started
}

// managerDown scales the manager to zero, creates a bare pod running as a new ServiceAccount, waits until its
// elector has been refused its Lease (403: nothing bound the account), brings the manager back and measures the
// elector's retry path: from the manager's return to the binding, and from the binding to the elector's first
// successful Lease write. Admission mode policy only: in webhook mode the same pod would be refused while the
// webhook is down.
func (w *world) managerDown(t *testing.T) {
	ctx := t.Context()
	cs := w.cs
	const name = "late"
	scale := func(replicas int32) {
		w.poll(30*time.Second, fmt.Sprintf("scaling the manager to %d", replicas), func(ctx context.Context) (bool, error) {
			d, err := cs.AppsV1().Deployments(node.WebhookNamespace).Get(ctx, managerName, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			d.Spec.Replicas = ptr.To(replicas)
			_, err = cs.AppsV1().Deployments(node.WebhookNamespace).Update(ctx, d, metav1.UpdateOptions{})
			return err == nil, nil
		})
	}
	d, err := cs.AppsV1().Deployments(node.WebhookNamespace).Get(ctx, managerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	scale(0)
	w.poll(60*time.Second, "no manager pod left", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(node.WebhookNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
		return err == nil && len(pods.Items) == 0, nil
	})

	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tmpl := w.sampleTemplate()
	tmpl.Labels = map[string]string{appLabel: name}
	tmpl.Spec.ServiceAccountName = name
	tmpl.Annotations[contract.AnnotationLeaseName] = name
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Name, pod.Namespace = name, ns
	stored, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("with the manager down, an annotated pod was refused: %v", err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if !hasElector(stored) {
		t.Fatalf("with the manager down, the annotated pod was stored without the elector")
	}
	var refused string
	w.poll(90*time.Second, "the elector refused its Lease (403) while nothing bound its account", func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.Status.PodIP == "" {
			return false, nil
		}
		refused = electorLeaseErrorsQuiet(p)
		return strings.Contains(refused, `reason="Forbidden"`), nil
	}, func() string { return "the elector's failed Lease calls: " + refused })

	back := time.Now()
	scale(replicas)
	var bound, held time.Time
	w.poll(120*time.Second, "the manager back, the account bound, the elector holding its Lease", func(ctx context.Context) (bool, error) {
		now := time.Now()
		if bound.IsZero() {
			if r, err := cs.RbacV1().Roles(ns).Get(ctx, binding.LeaseRoleName(name), metav1.GetOptions{}); err == nil && len(r.Rules) == 1 && slices.Contains(r.Rules[0].ResourceNames, name) {
				bound = now
			}
		}
		if l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{}); err == nil && ptr.Deref(l.Spec.HolderIdentity, "") == name {
			held = now
		}
		return !bound.IsZero() && !held.IsZero(), nil
	})
	p := w.pod(name)
	refused, _ = electorMetrics(t, p)
	t.Logf("manager down, bare pod: injected without it; manager scaled back -> account bound %s; bound -> elector holds the Lease %s (its retry backoff; lease %s); the elector's failed Lease API calls: %s",
		ms(bound.Sub(back)), ms(held.Sub(bound)), fastTimings[contract.AnnotationLeaseDuration], refused)
	w.poll(90*time.Second, "the manager ready again", func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(node.WebhookNamespace).Get(ctx, managerName, metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == replicas, nil
	})
}

// managerName is the chart's manager Deployment for release leader-election: named after the webhook in both
// modes, since the policies recognise its ServiceAccount by that name.
const managerName = "leader-election-webhook"

// electorLeaseErrorsQuiet is electorMetrics' Lease errors, or "" while the elector does not answer yet.
func electorLeaseErrorsQuiet(pod *corev1.Pod) string {
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + pod.Status.PodIP + ":" + strconv.Itoa(inject.DefaultPort) + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "leader_election_api_errors_total{") && strings.Contains(line, `resource="leases"`) {
			out = append(out, strings.TrimPrefix(line, "leader_election_api_errors_total"))
		}
	}
	return strings.Join(out, ", ")
}
