package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/leaderlabel"
	"github.com/leader-election/leader-election/pkg/webhook"
	"github.com/leader-election/leader-election/test/cluster"
)

// TestEventsTellTheWorkloadsStory runs the webhook with its shipped RBAC against a real API server and reads the
// Events the way `kubectl describe replicaset` does (core/v1 Events by involvedObject kind, name, namespace and
// UID): a refused pod, an injected pod and each change of leader are told on the pods' ReplicaSet, and a dry
// run tells nothing.
func TestEventsTellTheWorkloadsStory(t *testing.T) {
	env := startWithShippedWebhook(t)
	cs := env.Clientset
	ctx := t.Context()
	if err := cluster.InstallRBAC(ctx, cs, webhookUser); err != nil {
		t.Fatal(err)
	}
	startWebhook(t, env)

	ns := newNamespace(t, cs, nil)
	// A real ReplicaSet (no controller manager runs here, so the test creates its pods as the ReplicaSet
	// controller would, owned by it).
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5f7d8"},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1.0"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replica := func(name, port string) *corev1.Pod {
		pod := annotated(name)
		pod.Labels = map[string]string{"app": "web", "pod-template-hash": "5f7d8"}
		if port != "" {
			pod.Annotations[contract.AnnotationPort] = port
		}
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
		return withSA(pod, "web", t, cs, ns)
	}

	// A dry run first: whatever it would record must never appear.
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, replica("dry", "77777"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
		t.Fatal("a dry run of a pod with port 77777 was admitted")
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, replica("bad", "99999"), metav1.CreateOptions{}); err == nil {
		t.Fatal("a pod with port 99999 was admitted")
	}
	refused := waitForEvent(t, cs, rs, webhook.ReasonRefused, `annotation leader-election/port: "99999" is not accepted`)
	if refused.Type != corev1.EventTypeWarning || refused.ReportingController != "leader-election/webhook" {
		t.Errorf("refusal Event: type %s, reporting controller %q; want Warning from leader-election/webhook", refused.Type, refused.ReportingController)
	}

	a := createPod(t, cs, ns, "web", replica("web-a", ""))
	createPod(t, cs, ns, "web", replica("web-b", ""))
	waitForEvent(t, cs, rs, webhook.ReasonInjected, "injected the leader-election elector")

	lease, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: a.Annotations[contract.AnnotationLeaseName]},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("web-a"), LeaseTransitions: ptr.To[int32](3)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForEvent(t, cs, rs, leaderlabel.ReasonLeaderElected, "pod web-a leads Lease web and carries leader-election/role=leader")
	lease.Spec.HolderIdentity, lease.Spec.LeaseTransitions = ptr.To("web-b"), ptr.To[int32](4)
	if _, err := cs.CoordinationV1().Leases(ns).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForEvent(t, cs, rs, leaderlabel.ReasonLeaderElected, "pod web-b leads Lease web and carries leader-election/role=leader")

	for _, ev := range eventsOf(t, cs, rs) {
		if strings.Contains(ev.Message, "77777") {
			t.Errorf("a dry run recorded an Event: %s %s", ev.Reason, ev.Message)
		}
	}
}

// eventsOf lists the Events `kubectl describe` shows for an object.
func eventsOf(t *testing.T, cs kubernetes.Interface, rs *appsv1.ReplicaSet) []corev1.Event {
	t.Helper()
	selector := fmt.Sprintf("involvedObject.kind=ReplicaSet,involvedObject.name=%s,involvedObject.namespace=%s,involvedObject.uid=%s", rs.Name, rs.Namespace, rs.UID)
	list, err := cs.CoreV1().Events(rs.Namespace).List(t.Context(), metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitForEvent waits for an Event on the ReplicaSet with the reason and a message containing note.
func waitForEvent(t *testing.T, cs kubernetes.Interface, rs *appsv1.ReplicaSet, reason, note string) corev1.Event {
	t.Helper()
	var found *corev1.Event
	var seen []string
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		seen = seen[:0]
		for _, ev := range eventsOf(t, cs, rs) {
			seen = append(seen, ev.Reason+": "+ev.Message)
			if ev.Reason == reason && strings.Contains(ev.Message, note) {
				found = &ev
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event containing %q on ReplicaSet %s/%s; its Events: %q", reason, note, rs.Namespace, rs.Name, seen)
	}
	return *found
}
