package leaderlabel

import (
	"context"
	"encoding/json"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leader-election/leader-election/pkg/contract"
)

// withAnnotations adds annotations to a member pod.
func withAnnotations(p *corev1.Pod, kv ...string) *corev1.Pod {
	for i := 0; i+1 < len(kv); i += 2 {
		p.Annotations[kv[i]] = kv[i+1]
	}
	return p
}

func TestCostChange(t *testing.T) {
	ours := map[string]string{DeletionCostAnnotation: LeaderDeletionCost, DeletionCostManagedAnnotation: "true"}
	tests := []struct {
		name   string
		have   map[string]string
		leader bool
		want   map[string]*string // nil: no change
	}{
		{"leader without a cost gets ours", nil, true, map[string]*string{DeletionCostAnnotation: &LeaderDeletionCost, DeletionCostManagedAnnotation: ptrTo("true")}},
		{"leader with ours: nothing", ours, true, nil},
		{"leader with the user's cost: untouched", map[string]string{DeletionCostAnnotation: "5"}, true, nil},
		{"leader with the user's cost equal to ours: untouched", map[string]string{DeletionCostAnnotation: LeaderDeletionCost}, true, nil},
		{"leader with a marker whose cost was removed gets ours again", map[string]string{DeletionCostManagedAnnotation: "true"}, true,
			map[string]*string{DeletionCostAnnotation: &LeaderDeletionCost, DeletionCostManagedAnnotation: ptrTo("true")}},
		{"standby with ours loses both", ours, false, map[string]*string{DeletionCostAnnotation: nil, DeletionCostManagedAnnotation: nil}},
		{"standby with the user's cost: untouched", map[string]string{DeletionCostAnnotation: "-3"}, false, nil},
		{"standby without a cost: nothing", nil, false, nil},
		{"a marker with another value is not ours", map[string]string{DeletionCostAnnotation: "7", DeletionCostManagedAnnotation: "no"}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{}
			pod.Annotations = maps.Clone(tt.have)
			got := costChange(pod, tt.leader)
			if !equalChanges(got, tt.want) {
				t.Errorf("costChange(%v, leader=%v) = %s, want %s", tt.have, tt.leader, show(got), show(tt.want))
			}
		})
	}
}

// TestDeletionCostTravelsWithTheLabel: the holder's cost is set in the same patch as its label and removed in the
// same patch as the label; a cost the user set is never written; a cost left without a label is removed.
func TestDeletionCostTravelsWithTheLabel(t *testing.T) {
	cost := func(p *corev1.Pod) *corev1.Pod {
		return withAnnotations(p, DeletionCostAnnotation, LeaderDeletionCost, DeletionCostManagedAnnotation, "true")
	}
	tests := []struct {
		name    string
		objects []client.Object
		// wantPatches: per pod, the annotations its one patch carries ("" when the patch carries none).
		wantPatches map[string]string
		wantCost    map[string]string // the cost each pod ends with ("" none)
	}{
		{"the holder gets the label and the cost in one write",
			[]client.Object{lease("a"), member("a", "web", false), member("b", "web", false)},
			map[string]string{"a": `{"controller.kubernetes.io/pod-deletion-cost":"2147483647","leader-election/deletion-cost-managed":"true"}`},
			map[string]string{"a": LeaderDeletionCost, "b": ""}},
		{"label and cost move together",
			[]client.Object{lease("b"), cost(member("a", "web", true)), member("b", "web", false)},
			map[string]string{
				"a": `{"controller.kubernetes.io/pod-deletion-cost":null,"leader-election/deletion-cost-managed":null}`,
				"b": `{"controller.kubernetes.io/pod-deletion-cost":"2147483647","leader-election/deletion-cost-managed":"true"}`},
			map[string]string{"a": "", "b": LeaderDeletionCost}},
		{"the user's cost on the holder is kept",
			[]client.Object{lease("a"), withAnnotations(member("a", "web", false), DeletionCostAnnotation, "10")},
			map[string]string{"a": ""},
			map[string]string{"a": "10"}},
		{"the user's cost on the former leader is kept",
			[]client.Object{lease("b"), withAnnotations(member("a", "web", true), DeletionCostAnnotation, "10"), member("b", "web", false)},
			map[string]string{"a": "", "b": `{"controller.kubernetes.io/pod-deletion-cost":"2147483647","leader-election/deletion-cost-managed":"true"}`},
			map[string]string{"a": "10", "b": LeaderDeletionCost}},
		{"a holder labelled without a cost (an older controller) gets it",
			[]client.Object{lease("a"), member("a", "web", true)},
			map[string]string{"a": `{"controller.kubernetes.io/pod-deletion-cost":"2147483647","leader-election/deletion-cost-managed":"true"}`},
			map[string]string{"a": LeaderDeletionCost}},
		{"a cost left on an unlabelled standby is removed",
			[]client.Object{lease("a"), cost(member("a", "web", true)), cost(member("b", "web", false))},
			map[string]string{"b": `{"controller.kubernetes.io/pod-deletion-cost":null,"leader-election/deletion-cost-managed":null}`},
			map[string]string{"a": LeaderDeletionCost, "b": ""}},
		{"released Lease: the cost goes with the label",
			[]client.Object{lease(""), cost(member("a", "web", true))},
			map[string]string{"a": `{"controller.kubernetes.io/pod-deletion-cost":null,"leader-election/deletion-cost-managed":null}`},
			map[string]string{"a": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			patches := map[string][]string{}
			c := fake.NewClientBuilder().WithObjects(tt.objects...).WithIndex(&corev1.Pod{}, leaseIndex, indexByLease).
				WithInterceptorFuncs(interceptor.Funcs{Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
					data, _ := patch.Data(obj)
					var p struct {
						Metadata struct {
							Annotations json.RawMessage `json:"annotations"`
						} `json:"metadata"`
					}
					_ = json.Unmarshal(data, &p)
					patches[obj.GetName()] = append(patches[obj.GetName()], string(p.Metadata.Annotations))
					return cl.Patch(ctx, obj, patch, opts...)
				}}).Build()
			r := &Reconciler{Reader: c, Live: c, Writer: c}
			if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}}); err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.wantPatches {
				if got := patches[name]; len(got) != 1 || got[0] != want {
					t.Errorf("pod %s: patches carried annotations %q, want one patch with %q", name, got, want)
				}
			}
			for name := range patches {
				if _, expected := tt.wantPatches[name]; !expected {
					t.Errorf("pod %s patched (%q), want it left alone", name, patches[name])
				}
			}
			for name, want := range tt.wantCost {
				pod := &corev1.Pod{}
				if err := c.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: name}, pod); err != nil {
					t.Fatal(err)
				}
				if got := pod.Annotations[DeletionCostAnnotation]; got != want {
					t.Errorf("pod %s: deletion cost %q, want %q", name, got, want)
				}
				if want == "" && pod.Annotations[DeletionCostManagedAnnotation] != "" {
					t.Errorf("pod %s: marker %s left without a cost", name, DeletionCostManagedAnnotation)
				}
				if want == LeaderDeletionCost && pod.Labels[contract.LabelRole] != contract.RoleLeader {
					t.Errorf("pod %s: the leader's cost on a pod without the leader label", name)
				}
			}
		})
	}
}

// TestSettledIncludesTheCost: a group whose labels are right but whose cost is not is not settled, so its next
// Lease event repairs it.
func TestSettledIncludesTheCost(t *testing.T) {
	ours := func(p *corev1.Pod) *corev1.Pod {
		return withAnnotations(p, DeletionCostAnnotation, LeaderDeletionCost, DeletionCostManagedAnnotation, "true")
	}
	for _, tt := range []struct {
		name    string
		members []corev1.Pod
		want    bool
	}{
		{"holder labelled with our cost", []corev1.Pod{*ours(member("a", "web", true)), *member("b", "web", false)}, true},
		{"holder labelled with the user's cost", []corev1.Pod{*withAnnotations(member("a", "web", true), DeletionCostAnnotation, "1")}, true},
		{"holder labelled without a cost", []corev1.Pod{*member("a", "web", true)}, false},
		{"a standby with our cost", []corev1.Pod{*ours(member("a", "web", true)), *ours(member("b", "web", false))}, false},
	} {
		if got := settled(tt.members, lease("a")); got != tt.want {
			t.Errorf("%s: settled = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func ptrTo(s string) *string { return &s }

func equalChanges(a, b map[string]*string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || (v == nil) != (w == nil) || (v != nil && *v != *w) {
			return false
		}
	}
	return true
}

func show(m map[string]*string) string {
	b, _ := json.Marshal(m)
	return string(b)
}
