package leaderlabel

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/elector"
)

func member(name, lease string, leader bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop",
		Labels:      map[string]string{contract.LabelMember: "true"},
		Annotations: map[string]string{contract.AnnotationLeaseName: lease}}}
	if leader {
		p.Labels[contract.LabelRole] = contract.RoleLeader
	}
	return p
}

func lease(holder string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder)}}
}

// leaseWithUID is a Lease whose holder wrote its pod UID (contract of the elector).
func leaseWithUID(holder, uid string) *coordinationv1.Lease {
	l := lease(holder)
	l.Annotations = map[string]string{elector.HolderUIDAnnotation: uid}
	return l
}

func withUID(p *corev1.Pod, uid string) *corev1.Pod {
	p.UID = types.UID(uid)
	return p
}

func indexByLease(o client.Object) []string {
	return []string{o.GetNamespace() + "/" + o.GetAnnotations()[contract.AnnotationLeaseName]}
}

func TestReconcile(t *testing.T) {
	tests := []struct {
		name       string
		objects    []client.Object
		wantLeader []string
	}{
		{"holder gets the label", []client.Object{lease("a"), member("a", "web", false), member("b", "web", false)}, []string{"a"}},
		{"label moves to the new holder", []client.Object{lease("b"), member("a", "web", true), member("b", "web", false)}, []string{"b"}},
		{"released lease: nobody", []client.Object{lease(""), member("a", "web", true)}, nil},
		{"no lease yet: nobody", []client.Object{member("a", "web", true)}, nil},
		{"another lease's leader is left alone", []client.Object{lease("a"), member("a", "web", false), member("x", "other", true)}, []string{"a", "x"}},
		{"holder-uid names this pod", []client.Object{leaseWithUID("a", "uid-a"), withUID(member("a", "web", false), "uid-a")}, []string{"a"}},
		{"holder-uid names an earlier pod of the same name: nobody", []client.Object{leaseWithUID("a", "uid-old"), withUID(member("a", "web", true), "uid-a")}, nil},
		{"a holder that is not a member is never labelled", []client.Object{lease("a"), member("b", "web", true),
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "shop", Annotations: map[string]string{contract.AnnotationLeaseName: "web"}}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var order []string
			c := fake.NewClientBuilder().WithObjects(tt.objects...).WithIndex(&corev1.Pod{}, leaseIndex, indexByLease).
				WithInterceptorFuncs(interceptor.Funcs{Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
					data, _ := patch.Data(obj)
					order = append(order, obj.GetName()+" "+string(data))
					return cl.Patch(ctx, obj, patch, opts...)
				}}).Build()
			r := &Reconciler{Reader: c, Live: c, Writer: c}
			if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}}); err != nil {
				t.Fatal(err)
			}
			pods := &corev1.PodList{}
			if err := c.List(context.Background(), pods, client.MatchingLabels{contract.LabelRole: contract.RoleLeader}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pods.Items {
				got = append(got, p.Name)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantLeader) {
				t.Errorf("labelled %v, want %v (patches %v)", got, tt.wantLeader, order)
			}
			if tt.name == "label moves to the new holder" && (len(order) != 2 || order[0][:1] != "a") {
				t.Errorf("patches %v: the old leader's label must go before the new one's is set", order)
			}
		})
	}
}

// TestWritesAreGuarded: every write carries the resourceVersion the decision was made on, so a replica acting on
// an older state is refused by the API server instead of leaving a second label; the conflict is returned, and
// controller-runtime retries from a fresh read.
func TestWritesAreGuarded(t *testing.T) {
	var patches []string
	c := fake.NewClientBuilder().WithObjects(lease("b"), member("a", "web", true), member("b", "web", false)).
		WithIndex(&corev1.Pod{}, leaseIndex, indexByLease).
		WithInterceptorFuncs(interceptor.Funcs{Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			data, _ := patch.Data(obj)
			patches = append(patches, string(data))
			// Another replica changed the pod between this one's read and its write.
			return apierrors.NewConflict(corev1.Resource("pods"), obj.GetName(), errors.New("the object has been modified"))
		}}).Build()
	r := &Reconciler{Reader: c, Live: c, Writer: c}
	_, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}})
	if !errors.Is(err, errConflict) {
		t.Fatalf("Reconcile = %v, want the conflict returned for a retry", err)
	}
	if len(patches) != 1 || !strings.Contains(patches[0], `"resourceVersion":"`) || !strings.Contains(patches[0], `"leader-election/role":null`) {
		t.Errorf("patches %v: want one removal, carrying the pod's resourceVersion, and no label added after a conflict", patches)
	}
}

// TestSettledGroupCostsNothing: a Lease renewal of a group whose holder is labelled (with its deletion cost) makes
// no API call.
func TestSettledGroupCostsNothing(t *testing.T) {
	holder := withAnnotations(member("a", "web", true), DeletionCostAnnotation, LeaderDeletionCost, DeletionCostManagedAnnotation, "true")
	c := fake.NewClientBuilder().WithObjects(lease("a"), holder, member("b", "web", false)).
		WithIndex(&corev1.Pod{}, leaseIndex, indexByLease).Build()
	live := interceptor.NewClient(c, interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("live read")
		},
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("live read")
		},
	})
	r := &Reconciler{Reader: c, Live: live, Writer: live}
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}}); err != nil {
		t.Fatalf("a settled group reached the API server: %v", err)
	}
}

func TestStrays(t *testing.T) {
	stray := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "copied", Namespace: "shop", Labels: map[string]string{contract.LabelRole: contract.RoleLeader, "app": "web"}}}
	labelledMember := member("a", "web", true)
	c := fake.NewClientBuilder().WithObjects(stray, labelledMember).Build()
	s := &StrayReconciler{Live: c, Writer: c}
	for _, name := range []string{"copied", "a", "gone"} {
		if _, err := s.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: name}}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	got := &corev1.Pod{}
	_ = c.Get(context.Background(), client.ObjectKeyFromObject(stray), got)
	if _, ok := got.Labels[contract.LabelRole]; ok || got.Labels["app"] != "web" {
		t.Errorf("stray pod labels %v: want the role label removed and nothing else", got.Labels)
	}
	_ = c.Get(context.Background(), client.ObjectKeyFromObject(labelledMember), got)
	if got.Labels[contract.LabelRole] != contract.RoleLeader {
		t.Errorf("a member's label is the leader-label controller's, not the stray controller's: %v", got.Labels)
	}
	if !StraySelector().Matches(labels.Set(stray.Labels)) || StraySelector().Matches(labels.Set(labelledMember.Labels)) {
		t.Errorf("StraySelector %s: want it to select the stray and not the member", StraySelector())
	}
}
