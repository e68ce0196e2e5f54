package webhook

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/leader-election/leader-election/pkg/contract"
)

func template(sa string, annotations map[string]string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: annotations}, Spec: corev1.PodSpec{ServiceAccountName: sa}}
}

// TestWorkloadElection: a workload is bound exactly when its pods will be injected (the same opt-in and namespace
// policy as pkg/inject), for the Lease its pods will name.
func TestWorkloadElection(t *testing.T) {
	on := map[string]string{contract.AnnotationEnabled: "true"}
	for _, tc := range []struct {
		name     string
		tpl      *corev1.PodTemplateSpec
		enforced bool
		sa       string
		lease    string // "" = not bound
	}{
		{"opted in: the workload's name", template("runner", on), false, "runner", "web"},
		{"no ServiceAccount: default", template("", on), false, "default", "web"},
		{"lease-name annotation", template("runner", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "shared"}), false, "runner", "shared"},
		{"invalid lease name: its pods are refused", template("runner", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "Not_A_Name"}), false, "", ""},
		{"not annotated", template("runner", nil), false, "", ""},
		{"opted out", template("runner", map[string]string{contract.AnnotationEnabled: "false"}), false, "", ""},
		{"bad opt-in value: its pods are refused", template("runner", map[string]string{contract.AnnotationEnabled: "yes"}), true, "", ""},
		{"enforcing namespace, not annotated", template("runner", nil), true, "runner", "web"},
		{"enforcing namespace, opted out: its pods are refused", template("runner", map[string]string{contract.AnnotationEnabled: "false"}), true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, lease, ok := WorkloadElection("web", tc.tpl, tc.enforced)
			if ok != (tc.lease != "") || sa != tc.sa || lease != tc.lease {
				t.Errorf("got (%q, %q, %v), want (%q, %q, %v)", sa, lease, ok, tc.sa, tc.lease, tc.lease != "")
			}
		})
	}
}

// TestWorkloadBinder: Deployments and StatefulSets are bound from their templates and their namespace's enforce
// label; excluded namespaces, workloads being deleted and workloads gone are not.
func TestWorkloadBinder(t *testing.T) {
	on := map[string]string{contract.AnnotationEnabled: "true"}
	deploy := func(ns, name string, tpl *corev1.PodTemplateSpec) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{Template: *tpl}}
	}
	leaving := deploy("shop", "leaving", template("runner", on))
	leaving.DeletionTimestamp, leaving.Finalizers = ptrTime(), []string{"example.com/hold"}
	c := fake.NewClientBuilder().WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "strict", Labels: map[string]string{contract.LabelEnforce: "true"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}},
		deploy("shop", "web", template("runner", on)),
		deploy("shop", "plain", template("runner", nil)),
		leaving,
		deploy("strict", "api", template("", nil)),
		deploy("kube-system", "dns", template("coredns", on)),
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"}, Spec: appsv1.StatefulSetSpec{Template: *template("db", on)}},
	).Build()
	g := &grantRecorder{}
	b := &WorkloadBinder{Reader: c, Binder: g, Excluded: NewNamespaceSet([]string{"kube-system"})}
	reconcile := func(obj client.Object, ns, name string) {
		r := &workloadReconciler{WorkloadBinder: b, newObject: func() client.Object { return obj.DeepCopyObject().(client.Object) }}
		if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}); err != nil {
			t.Errorf("%s/%s: %v", ns, name, err)
		}
	}
	for _, key := range [][2]string{{"shop", "web"}, {"shop", "plain"}, {"shop", "leaving"}, {"strict", "api"}, {"kube-system", "dns"}, {"shop", "gone"}} {
		reconcile(&appsv1.Deployment{}, key[0], key[1])
	}
	reconcile(&appsv1.StatefulSet{}, "shop", "db")
	if want := []string{"shop/runner/web", "strict/default/api", "shop/db/db"}; !slices.Equal(g.calls, want) {
		t.Errorf("bound %v, want %v", g.calls, want)
	}

	// A namespace event reaches every workload of the kind in it, and none in an excluded namespace.
	reqs := b.workloadsIn(func() client.ObjectList { return &appsv1.DeploymentList{} })(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	var names []string
	for _, r := range reqs {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	if want := []string{"leaving", "plain", "web"}; !slices.Equal(names, want) {
		t.Errorf("namespace shop enqueued %v, want %v", names, want)
	}
	if reqs := b.workloadsIn(func() client.ObjectList { return &appsv1.DeploymentList{} })(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}); len(reqs) != 0 {
		t.Errorf("excluded namespace enqueued %v", reqs)
	}
}
