package webhook

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/leader-election/leader-election/pkg/contract"
)

// grantRecorder remembers what it was asked to bind.
type grantRecorder struct{ calls []string }

func (g *grantRecorder) Bind(_ context.Context, ns, sa, lease string) error {
	g.calls = append(g.calls, ns+"/"+sa+"/"+lease)
	return nil
}

// TestPodBinder: stored member pods are bound for their Lease; pods of excluded namespaces, pods that are not
// members, and pods already going away are not.
func TestPodBinder(t *testing.T) {
	pod := func(ns, name, sa string, member bool, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Annotations: map[string]string{contract.AnnotationLeaseName: "web"}}, Spec: corev1.PodSpec{ServiceAccountName: sa}}
		if member {
			p.Labels = map[string]string{contract.LabelMember: "true"}
		}
		if deleting {
			p.DeletionTimestamp, p.Finalizers = ptrTime(), []string{"example.com/hold"}
		}
		return p
	}
	c := fake.NewClientBuilder().WithObjects(
		pod("shop", "member", "runner", true, false),
		pod("shop", "default-sa", "", true, false),
		pod("shop", "plain", "runner", false, false),
		pod("shop", "leaving", "runner", true, true),
		pod("kube-system", "system", "default", true, false),
	).Build()
	g := &grantRecorder{}
	r := &PodBinder{Reader: c, Binder: g, Excluded: NewNamespaceSet([]string{"kube-system"})}
	for _, key := range []types.NamespacedName{
		{Namespace: "shop", Name: "member"}, {Namespace: "shop", Name: "default-sa"}, {Namespace: "shop", Name: "plain"},
		{Namespace: "shop", Name: "leaving"}, {Namespace: "kube-system", Name: "system"}, {Namespace: "shop", Name: "gone"},
	} {
		if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: key}); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	if want := []string{"shop/runner/web", "shop/default/web"}; !slices.Equal(g.calls, want) {
		t.Errorf("bound %v, want %v", g.calls, want)
	}
}

func ptrTime() *metav1.Time {
	now := metav1.Now()
	return &now
}
