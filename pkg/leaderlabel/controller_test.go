package leaderlabel

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leader-election/leader-election/pkg/inject"
)

func member(name, lease string, leader bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop",
		Labels:      map[string]string{inject.LabelMember: "true"},
		Annotations: map[string]string{inject.AnnotationLeaseName: lease}}}
	if leader {
		p.Labels[inject.LabelRole] = inject.RoleLeader
	}
	return p
}

func lease(holder string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder)}}
}

func indexByLease(o client.Object) []string {
	return []string{o.GetNamespace() + "/" + o.GetAnnotations()[inject.AnnotationLeaseName]}
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
			r := &Reconciler{Reader: c, Writer: c}
			if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}}); err != nil {
				t.Fatal(err)
			}
			pods := &corev1.PodList{}
			if err := c.List(context.Background(), pods, client.MatchingLabels{inject.LabelRole: inject.RoleLeader}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pods.Items {
				got = append(got, p.Name)
			}
			if len(got) != len(tt.wantLeader) || (len(got) > 0 && got[0] != tt.wantLeader[0]) {
				t.Errorf("labelled %v, want %v (patches %v)", got, tt.wantLeader, order)
			}
			if tt.name == "label moves to the new holder" && (len(order) != 2 || order[0][:1] != "a") {
				t.Errorf("patches %v: the old leader's label must go before the new one's is set", order)
			}
		})
	}
}
