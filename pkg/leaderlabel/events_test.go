package leaderlabel

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

type fakeRecorder struct{ events []string }

func (f *fakeRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, _, note string, args ...any) {
	reg, rel := regarding.(*corev1.ObjectReference), related.(*corev1.ObjectReference)
	f.events = append(f.events, fmt.Sprintf("%s %s/%s(%s) %s: %s [related %s %s]",
		eventtype, reg.Kind, reg.Name, reg.UID, reason, fmt.Sprintf(note, args...), rel.Kind, rel.Name))
}

func TestAMovedLabelIsRecordedOnTheNewLeadersOwner(t *testing.T) {
	owned := func(p *corev1.Pod) *corev1.Pod {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-6c9", UID: "rs-uid", Controller: ptr.To(true)}}
		return p
	}
	l := lease("b")
	for _, tc := range []struct {
		name    string
		objects []client.Object
		want    []string
	}{
		{"label moves", []client.Object{l, owned(member("a", "web", true)), owned(member("b", "web", false))},
			[]string{"Normal ReplicaSet/web-6c9(rs-uid) LeaderElected: pod b leads Lease web and carries leader-election/role=leader [related Pod b]"}},
		{"a pod without an owner", []client.Object{l, member("b", "web", false)},
			[]string{"Normal Pod/b() LeaderElected: pod b leads Lease web and carries leader-election/role=leader [related Pod b]"}},
		{"the label is already right: nothing to tell", []client.Object{l, owned(member("b", "web", true))}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(tc.objects...).WithIndex(&corev1.Pod{}, leaseIndex, indexByLease).Build()
			rec := &fakeRecorder{}
			r := &Reconciler{Reader: c, Live: c, Writer: c, Events: rec}
			if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(rec.events) != fmt.Sprint(tc.want) {
				t.Errorf("Events\n%v\nwant\n%v", rec.events, tc.want)
			}
		})
	}
}
