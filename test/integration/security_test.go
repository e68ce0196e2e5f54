package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/elector"
	"github.com/leader-election/leader-election/pkg/leaderlabel"
	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/controlplane"
)

// Policy names as config/policies ships them; every refusal below must name the policy that made it.
const (
	policyWebhookPods         = "leader-election-webhook-pods"
	policyWebhookRoleBindings = "leader-election-webhook-rolebindings"
	policyWebhookRoles        = "leader-election-webhook-roles"
	policyElectorLeases       = "leader-election-elector-leases"
	policyPodLabels           = cluster.PodLabelsPolicy
)

// installPolicies installs config/policies and waits until they are enforced.
func installPolicies(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	if err := cluster.InstallPolicies(t.Context(), cs); err != nil {
		t.Fatal(err)
	}
}

// waitEnforced waits until the policies are in force again.
func waitEnforced(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	if err := cluster.WaitPoliciesEnforced(t.Context(), cs); err != nil {
		t.Fatal(err)
	}
}

// clientFor is a clientset for a kubeconfig file (the webhook's identity).
func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// podToken is a clientset holding a token bound to one pod, as the kubelet projects it into the pod.
func podToken(t *testing.T, env *controlplane.Env, pod *corev1.Pod) kubernetes.Interface {
	t.Helper()
	tr, err := env.Clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: env.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}}
	return kubernetes.NewForConfigOrDie(cfg)
}

// refusedByEither fails the test unless err is a refusal by one of the policies, with that policy's message.
// Each alternative is {policy, want}.
func refusedByEither(t *testing.T, what string, err error, alternatives ...[2]string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want refused by one of %v", what, alternatives)
		return
	}
	for _, a := range alternatives {
		if strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+a[0]+"'") && strings.Contains(err.Error(), a[1]) {
			return
		}
	}
	t.Errorf("%s: refused with %v, want a refusal by one of %v", what, err, alternatives)
}

// refusedBy fails the test unless err is a refusal that names the policy (and, if given, contains want).
func refusedBy(t *testing.T, what string, err error, policy, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: allowed, want refused by %s", what, policy)
	case !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policy+"'"):
		t.Errorf("%s: refused with %v, want a refusal naming policy %s", what, err, policy)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("%s: refused with %v, want it to say %q", what, err, want)
	}
}

func labelPatch(labels map[string]*string) []byte {
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	return b
}

// metaPatch is a merge patch of labels and annotations (nil value: remove).
func metaPatch(labels, annotations map[string]*string) []byte {
	meta := map[string]any{}
	if labels != nil {
		meta["labels"] = labels
	}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	b, _ := json.Marshal(map[string]any{"metadata": meta})
	return b
}

// testWebhookDeletionCost: the webhook's identity may give the pod it labels leader the highest deletion cost,
// with the marker that says the cost is the controller's, and take exactly that away again; nothing else about
// the cost, and never a cost the user set. The pod "held" is led through a Lease of its own, so the running
// webhook's controller writes its label and cost through the policy and keeps them there for the refusals.
func testWebhookDeletionCost(t *testing.T, env *controlplane.Env, wh kubernetes.Interface, ns string, memberPod, plain *corev1.Pod) {
	cs, ctx := env.Clientset, t.Context()
	const refusal = "may set controller.kubernetes.io/pod-deletion-cost only to 2147483647"
	leader := map[string]*string{contract.LabelRole: ptr.To(contract.RoleLeader)}
	ours := func(extra ...string) map[string]*string {
		a := map[string]*string{leaderlabel.DeletionCostAnnotation: ptr.To(leaderlabel.LeaderDeletionCost), leaderlabel.DeletionCostManagedAnnotation: ptr.To("true")}
		for i := 0; i+1 < len(extra); i += 2 {
			a[extra[i]] = ptr.To(extra[i+1])
		}
		return a
	}
	patch := func(pod *corev1.Pod, labels, annotations map[string]*string) error {
		_, err := wh.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, metaPatch(labels, annotations), metav1.PatchOptions{})
		return err
	}
	userCost := annotated("user-cost")
	userCost.Annotations[leaderlabel.DeletionCostAnnotation] = "10"
	userPod := createPod(t, cs, ns, "web", userCost)

	// Allowed: the controller's write and its undoing (the running controller may undo it first: no Lease "web").
	if err := patch(memberPod, leader, ours()); err != nil {
		t.Errorf("the label with the leader's cost on a member: %v", err)
	}
	if err := patch(memberPod, map[string]*string{contract.LabelRole: nil}, map[string]*string{leaderlabel.DeletionCostAnnotation: nil, leaderlabel.DeletionCostManagedAnnotation: nil}); err != nil {
		t.Errorf("removing the label with the cost: %v", err)
	}
	for _, tc := range []struct {
		name                string
		pod                 *corev1.Pod
		labels, annotations map[string]*string
		want                string
	}{
		{"the cost on a non-member pod", plain, nil, ours(), refusal},
		{"the cost and the label on a non-member pod", plain, leader, ours(), ""},
		{"the cost on a member without the leader label in the same write", memberPod, nil, ours(), refusal},
		{"another value (1)", memberPod, leader, map[string]*string{leaderlabel.DeletionCostAnnotation: ptr.To("1"), leaderlabel.DeletionCostManagedAnnotation: ptr.To("true")}, refusal},
		{"a negative value: the pod deleted first", memberPod, leader, map[string]*string{leaderlabel.DeletionCostAnnotation: ptr.To("-2147483648"), leaderlabel.DeletionCostManagedAnnotation: ptr.To("true")}, refusal},
		{"the cost without its marker", memberPod, leader, map[string]*string{leaderlabel.DeletionCostAnnotation: ptr.To(leaderlabel.LeaderDeletionCost)}, refusal},
		{"the marker without the cost", memberPod, leader, map[string]*string{leaderlabel.DeletionCostManagedAnnotation: ptr.To("true")}, refusal},
		{"another annotation with the cost", memberPod, leader, ours("x", "y"), "annotations other than controller.kubernetes.io/pod-deletion-cost"},
		{"another annotation of ours with the cost", memberPod, leader, ours(contract.AnnotationLeaseName, "other"), "annotations other than controller.kubernetes.io/pod-deletion-cost"},
		{"overwriting the user's cost", userPod, leader, ours(), refusal},
		{"claiming the user's cost with the marker", userPod, leader, map[string]*string{leaderlabel.DeletionCostManagedAnnotation: ptr.To("true")}, refusal},
		{"removing the user's cost", userPod, nil, map[string]*string{leaderlabel.DeletionCostAnnotation: nil}, refusal},
	} {
		refusedBy(t, tc.name, patch(tc.pod, tc.labels, tc.annotations), policyWebhookPods, tc.want)
	}

	// A pod led through its own Lease: the running controller gives it the label and the cost.
	held := createPod(t, cs, ns, "web", annotatedFor("held", "cost-lease"))
	if _, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "cost-lease", Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(held.Name)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, held.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = p.Annotations
		return p.Labels[contract.LabelRole] == contract.RoleLeader && got[leaderlabel.DeletionCostAnnotation] == leaderlabel.LeaderDeletionCost &&
			got[leaderlabel.DeletionCostManagedAnnotation] == "true", nil
	}); err != nil {
		t.Fatalf("the controller did not give the Lease holder %s its label and deletion cost through the policy: annotations %v", held.Name, got)
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]*string
	}{
		{"removing only the marker of the controller's cost", map[string]*string{leaderlabel.DeletionCostManagedAnnotation: nil}},
		{"removing only the controller's cost, keeping the marker", map[string]*string{leaderlabel.DeletionCostAnnotation: nil}},
		{"lowering the controller's cost", map[string]*string{leaderlabel.DeletionCostAnnotation: ptr.To("0")}},
	} {
		refusedBy(t, tc.name, patch(held, nil, tc.annotations), policyWebhookPods, refusal)
	}
}

// testWebhookIdentity: what the webhook's own credentials can and cannot do, as requests and as
// SubjectAccessReviews.
func testWebhookIdentity(t *testing.T, env *controlplane.Env, webhookKubeconfig string) {
	cs := env.Clientset
	ctx := t.Context()
	wh := clientFor(t, webhookKubeconfig)
	ns := newNamespace(t, cs, nil)
	memberPod := createPod(t, cs, ns, "web", annotated("member"))
	plain := createPod(t, cs, ns, "web", plainPod("plain"))
	kubeSystemPod := createPod(t, cs, "kube-system", "default", plainPod("privileged-system-pod"))

	t.Run("may set and remove the role label on a member pod", func(t *testing.T) {
		for _, v := range []*string{ptr.To(contract.RoleLeader), nil} {
			if _, err := wh.CoreV1().Pods(ns).Patch(ctx, memberPod.Name, types.MergePatchType, labelPatch(map[string]*string{contract.LabelRole: v}), metav1.PatchOptions{}); err != nil {
				t.Fatalf("role label %v: %v", v, err)
			}
		}
	})
	t.Run("may not change an image, here or in kube-system", func(t *testing.T) {
		for _, p := range []*corev1.Pod{memberPod, kubeSystemPod} {
			patch := []byte(`{"spec":{"containers":[{"name":"app","image":"attacker/root:1"}]}}`)
			_, err := wh.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
			refusedBy(t, "image of "+p.Namespace+"/"+p.Name, err, policyWebhookPods, "may not change a pod's spec")
		}
	})
	t.Run("may not change another label or an annotation", func(t *testing.T) {
		_, err := wh.CoreV1().Pods(ns).Patch(ctx, memberPod.Name, types.MergePatchType, labelPatch(map[string]*string{"app": ptr.To("other")}), metav1.PatchOptions{})
		refusedBy(t, "another label", err, policyWebhookPods, "labels other than leader-election/role")
		_, err = wh.CoreV1().Pods(ns).Patch(ctx, memberPod.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"x":"y"}}}`), metav1.PatchOptions{})
		refusedBy(t, "an annotation", err, policyWebhookPods, "annotations")
		_, err = wh.CoreV1().Pods(ns).Patch(ctx, memberPod.Name, types.MergePatchType, labelPatch(map[string]*string{contract.LabelMember: nil}), metav1.PatchOptions{})
		// Two policies forbid this (the webhook may change only the role label; nobody may change the member
		// label); the API server reports whichever it evaluates first, so either refusal is the right answer.
		refusedByEither(t, "removing the member label", err,
			[2]string{policyPodLabels, "leader-election/member"},
			[2]string{policyWebhookPods, "labels other than leader-election/role"})
	})
	t.Run("may not label a non-member pod", func(t *testing.T) {
		_, err := wh.CoreV1().Pods(ns).Patch(ctx, plain.Name, types.MergePatchType, labelPatch(map[string]*string{contract.LabelRole: ptr.To(contract.RoleLeader)}), metav1.PatchOptions{})
		refusedBy(t, "role label on a non-member", err, policyWebhookPods, "only on a pod labelled leader-election/member=true")
	})

	t.Run("may set the deletion cost only with the leader label, and never the user's", func(t *testing.T) {
		testWebhookDeletionCost(t, env, wh, ns, memberPod, plain)
	})

	rb := func(name, role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: binding.Labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}
	}
	sa := func(ns, name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: "ServiceAccount", Name: name, Namespace: ns}
	}
	t.Run("may bind only the elector role to one ServiceAccount of the namespace", func(t *testing.T) {
		_, err := wh.RbacV1().RoleBindings(ns).Create(ctx, rb(binding.Name("x"), "cluster-admin", sa(ns, "x")), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "attempting to grant RBAC permissions not currently held") {
			t.Errorf("binding cluster-admin: %v, want RBAC's escalation refusal", err)
		}
		for _, tc := range []struct {
			name string
			rb   *rbacv1.RoleBinding
			want string
		}{
			{"its own ClusterRole, pods patch included", rb(binding.Name("x"), "leader-election-webhook", sa(ns, "x")), "may bind only the ClusterRole leader-election-elector"},
			{"the elector role to system:authenticated", rb(binding.Name("x"), "leader-election-elector", rbacv1.Subject{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "system:authenticated"}), "exactly one subject"},
			{"the elector role to a user", rb(binding.Name("x"), "leader-election-elector", rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "mallory"}), "exactly one subject"},
			{"the elector role to two accounts", rb(binding.Name("x"), "leader-election-elector", sa(ns, "x"), sa(ns, "y")), "exactly one subject"},
			{"the elector role to another namespace's account", rb(binding.Name("x"), "leader-election-elector", sa("kube-system", "default")), "of the RoleBinding's own namespace"},
			{"a binding not named as ours", rb("innocent", "leader-election-elector", sa(ns, "x")), "(RoleBinding leader-election-elector-<ServiceAccount>)"},
		} {
			_, err := wh.RbacV1().RoleBindings(ns).Create(ctx, tc.rb, metav1.CreateOptions{})
			refusedBy(t, tc.name, err, policyWebhookRoleBindings, tc.want)
		}
		if _, err := wh.RbacV1().RoleBindings(ns).Create(ctx, rb(binding.Name("x"), "leader-election-elector", sa(ns, "x")), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("the binding the webhook exists to write was refused: %v", err)
		}
		// The handler refuses excluded namespaces, but the token does not go through the handler: in kube-system
		// the elector role would let a system pod's token write the control plane's Leases.
		_, err = wh.RbacV1().RoleBindings("kube-system").Create(ctx, rb(binding.Name("kube-proxy"), "leader-election-elector", sa("kube-system", "kube-proxy")), metav1.CreateOptions{})
		refusedBy(t, "the elector role in kube-system", err, policyWebhookRoleBindings, "not in a namespace the installation excludes")
	})

	t.Run("may write only Roles that list Leases to hold", func(t *testing.T) {
		role := func(name string, rules ...rbacv1.PolicyRule) *rbacv1.Role {
			return &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: binding.Labels}, Rules: rules}
		}
		hold := rbacv1.PolicyRule{APIGroups: []string{binding.HoldGroup}, Resources: []string{binding.HoldResource}, Verbs: []string{binding.HoldVerb}, ResourceNames: []string{"web"}}
		_, err := wh.RbacV1().Roles(ns).Create(ctx, role(binding.LeaseRoleName("x"), rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "attempting to grant RBAC permissions not currently held") {
			t.Errorf("a Role granting Secrets: %v, want RBAC's escalation refusal", err)
		}
		// The webhook holds pods patch, so RBAC would let it grant that: the policy does not.
		_, err = wh.RbacV1().Roles(ns).Create(ctx, role(binding.LeaseRoleName("x"), hold, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"patch"}}), metav1.CreateOptions{})
		refusedBy(t, "a Role granting pods patch", err, policyWebhookRoles, "one rule granting")
		_, err = wh.RbacV1().Roles(ns).Create(ctx, role("innocent", hold), metav1.CreateOptions{})
		refusedBy(t, "a Role not named as ours", err, policyWebhookRoles, "named leader-election-leases-<ServiceAccount>")
		// A Role someone else made, granting only what the webhook holds (so RBAC's escalation check passes).
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role("admin-role", hold), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = wh.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: binding.LeaseRoleName("x"), Labels: binding.Labels},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "admin-role"}, Subjects: []rbacv1.Subject{sa(ns, "x")}}, metav1.CreateOptions{})
		refusedBy(t, "binding a Role of another name", err, policyWebhookRoleBindings, "the Role of the RoleBinding's own name")
		if _, err := wh.RbacV1().Roles(ns).Create(ctx, role(binding.LeaseRoleName("x"), hold), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("the Role the webhook exists to write was refused: %v", err)
		}
		holdScheduler := hold
		holdScheduler.ResourceNames = []string{"kube-scheduler"}
		_, err = wh.RbacV1().Roles("kube-system").Create(ctx, role(binding.LeaseRoleName("kube-proxy"), holdScheduler), metav1.CreateOptions{})
		refusedBy(t, "a Role in kube-system listing the scheduler's Lease", err, policyWebhookRoles, "not in a namespace the installation excludes")
	})

	t.Run("SubjectAccessReviews: nothing beyond the label, the bindings and the reads", func(t *testing.T) {
		allowed := []authorizationv1.ResourceAttributes{
			{Namespace: ns, Resource: "pods", Verb: "patch"},
			{Namespace: ns, Resource: "pods", Verb: "list"},
			{Namespace: ns, Group: "rbac.authorization.k8s.io", Resource: "rolebindings", Verb: "create"},
			{Namespace: ns, Group: "rbac.authorization.k8s.io", Resource: "roles", Verb: "create"},
			{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "bind", Name: "leader-election-elector"},
			{Namespace: ns, Resource: "serviceaccounts", Verb: "get"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "watch"},
		}
		denied := []authorizationv1.ResourceAttributes{
			{Namespace: ns, Resource: "pods", Verb: "create"},
			{Namespace: ns, Resource: "pods", Verb: "delete"},
			{Namespace: ns, Resource: "pods", Verb: "update"},
			{Namespace: ns, Resource: "pods", Subresource: "exec", Verb: "create"},
			{Namespace: ns, Resource: "pods", Subresource: "ephemeralcontainers", Verb: "patch"},
			{Namespace: ns, Resource: "pods", Subresource: "status", Verb: "patch"},
			{Namespace: ns, Resource: "secrets", Verb: "get"},
			{Namespace: ns, Resource: "secrets", Verb: "list"},
			{Namespace: ns, Resource: "serviceaccounts", Subresource: "token", Verb: "create"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "update"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"},
			{Namespace: ns, Group: "rbac.authorization.k8s.io", Resource: "rolebindings", Verb: "delete"},
			{Namespace: ns, Group: "rbac.authorization.k8s.io", Resource: "roles", Verb: "escalate"},
			{Namespace: ns, Group: "rbac.authorization.k8s.io", Resource: "roles", Verb: "bind"},
			{Namespace: ns, Group: "rbac.authorization.k8s.io", Resource: "roles", Verb: "delete"},
			{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "escalate"},
			{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "bind", Name: "cluster-admin"},
			{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings", Verb: "create"},
			{Group: "admissionregistration.k8s.io", Resource: "validatingadmissionpolicybindings", Verb: "delete"},
			{Resource: "nodes", Verb: "patch"},
			{Group: "apps", Namespace: ns, Resource: "deployments", Verb: "patch"},
		}
		for _, attrs := range allowed {
			if !canI(t, env.Clientset, webhookUser, attrs) {
				t.Errorf("webhook may not %s %s/%s, which it needs", attrs.Verb, attrs.Resource, attrs.Subresource)
			}
		}
		for _, attrs := range denied {
			if canI(t, env.Clientset, webhookUser, attrs) {
				t.Errorf("webhook may %s %s/%s %s, want denied", attrs.Verb, attrs.Resource, attrs.Subresource, attrs.Name)
			}
		}
	})
}

// testForgedReview sends an AdmissionReview for kube-system straight to the webhook's port, as anyone who can
// reach it could: it is refused, and nothing is bound there.
func testForgedReview(t *testing.T, env *controlplane.Env) {
	ctx := t.Context()
	pod := annotated("forged")
	pod.Namespace = "kube-system"
	pod.Spec.ServiceAccountName = "default"
	answer := forgeReview(t, env, pod)
	if answer.Allowed || answer.Result == nil || !strings.Contains(answer.Result.Message, "namespace kube-system is excluded") {
		t.Errorf("forged review for kube-system: allowed=%v result=%+v, want a refusal naming the excluded namespace", answer.Allowed, answer.Result)
	}
	if _, err := env.Clientset.RbacV1().RoleBindings("kube-system").Get(ctx, binding.Name("default"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("RoleBinding in kube-system after a forged review: %v, want NotFound", err)
	}
}

// testForgedReviewServed: a forged review for a namespace the webhook serves, naming another controller's
// ServiceAccount and its Lease, grants nothing: the webhook binds only pods the API server has stored. Were the
// elector role bound, the Lease policy would judge that controller's writes as an elector's and refuse them.
func testForgedReviewServed(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset
	ctx := t.Context()
	ns := newNamespace(t, cs, nil)
	controller := createPod(t, cs, ns, "controller", plainPod("controller-0"))
	forged := annotatedFor("forged", "controller-lock")
	forged.Namespace, forged.Spec.ServiceAccountName = ns, "controller"
	if answer := forgeReview(t, env, forged); !answer.Allowed {
		t.Errorf("forged review for a served namespace: refused with %+v, want the patch a real pod would get", answer.Result)
	}
	// Give a binding time to appear and reach the authorizer, then check there is none.
	time.Sleep(2 * time.Second)
	for _, name := range []string{binding.Name("controller"), binding.LeaseRoleName("controller")} {
		if _, err := cs.RbacV1().RoleBindings(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("RoleBinding %s after a forged review: %v, want NotFound", name, err)
		}
	}
	if canI(t, cs, "system:serviceaccount:"+ns+":controller", authorizationv1.ResourceAttributes{Namespace: ns, Group: binding.HoldGroup, Resource: "electors", Verb: "elect"}) {
		t.Errorf("ServiceAccount controller was made an elector by a forged review")
	}
	l := controllerLease(t, cs, ns)
	var err error
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err = podToken(t, env, controller).CoordinationV1().Leases(ns).Create(ctx, l, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil || strings.Contains(err.Error(), "ValidatingAdmissionPolicy"), nil // RBAC caches need a moment
	})
	if err != nil {
		t.Errorf("the controller's own Lease write after a forged review: %v, want allowed", err)
	}
}

// controllerLease grants ServiceAccount "controller" of namespace ns the creation of Leases, as another
// controller's chart would, and returns the Lease such a controller's client-go elector writes.
func controllerLease(t *testing.T, cs kubernetes.Interface, ns string) *coordinationv1.Lease {
	t.Helper()
	ctx := t.Context()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "controller-leases", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}}}}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "controller-leases"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "controller", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "controller-lock", Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("controller-0_4b1c"), LeaseDurationSeconds: ptr.To[int32](15)}}
}

// forgeReview posts an AdmissionReview for creating pod straight to the webhook's port, as anyone who can reach
// it could, and returns the answer.
func forgeReview(t *testing.T, env *controlplane.Env, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("forged-" + pod.Namespace), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: pod.Namespace,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(review)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(env.WebhookInstallOptions.LocalServingCAData)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate-pod", env.WebhookInstallOptions.LocalServingPort)
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var answer admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &answer); err != nil || answer.Response == nil {
		t.Fatalf("answer %s: %v", data, err)
	}
	return answer.Response
}

// testForeignBindings: a RoleBinding under the webhook's chosen name that it did not create is refused (another
// role: the pod is refused with a message naming it) or taken over (the elector role, other subjects).
func testForeignBindings(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset
	ctx := t.Context()
	ns := newNamespace(t, cs, nil)
	foreign := func(sa, role string) {
		t.Helper()
		withSA(plainPod("unused"), sa, t, cs, ns) // the ServiceAccount exists
		_, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: binding.Name(sa)},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "team"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	foreign("viewer", "view")
	_, err := cs.CoreV1().Pods(ns).Create(ctx, withSA(annotated("refused"), "viewer", t, cs, ns), metav1.CreateOptions{})
	want := "RoleBinding " + ns + "/" + binding.Name("viewer") + ` exists and refers to ClusterRole "view"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("pod of a ServiceAccount whose binding name is taken: %v, want a refusal containing %q", err, want)
	}
	foreign("taken", "leader-election-elector")
	createPod(t, cs, ns, "taken", annotated("repaired"))
	waitCanHold(t, cs, ns, "taken", "web")
	rb, err := cs.RbacV1().RoleBindings(ns).Get(ctx, binding.Name("taken"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != "taken" || rb.Labels["app.kubernetes.io/managed-by"] != "leader-election" {
		t.Errorf("RoleBinding after the pod was admitted: subjects %+v labels %v, want it taken over for ServiceAccount taken", rb.Subjects, rb.Labels)
	}
}

// testElectorLeases: what a token bound to one elector's pod may write into Leases.
func testElectorLeases(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset
	ctx := t.Context()
	ns := newNamespace(t, cs, nil)
	a := createPod(t, cs, ns, "web", annotated("replica-a"))
	b := createPod(t, cs, ns, "web", annotated("replica-b"))
	asA := podToken(t, env, a).CoordinationV1().Leases(ns)
	waitCanHold(t, cs, ns, "web", "web")

	own := func(name string, pod *corev1.Pod) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{elector.HolderUIDAnnotation: string(pod.UID)}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(pod.Name), LeaseDurationSeconds: ptr.To[int32](15), LeaseTransitions: ptr.To[int32](0)},
		}
	}
	huge := own("web", a)
	huge.Spec.LeaseTransitions = ptr.To[int32](math.MaxInt32)
	_, err := asA.Create(ctx, huge, metav1.CreateOptions{})
	refusedBy(t, "creating a Lease with leaseTransitions at its maximum", err, policyElectorLeases, "from 0 to 2^30")
	// An elector that saw its Lease deleted recreates it above the last token it saw, so the token keeps rising.
	recreated := own("web", a)
	recreated.Spec.LeaseTransitions = ptr.To[int32](7)
	if _, err := asA.Create(ctx, recreated, metav1.CreateOptions{}); err != nil {
		t.Fatalf("pod A recreating a deleted Lease above the last token: %v", err)
	}
	if err := cs.CoordinationV1().Leases(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lease, err := asA.Create(ctx, own("web", a), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod A creating its Lease with itself as holder: %v", err)
	}
	update := func(mutate func(*coordinationv1.Lease)) error {
		l := lease.DeepCopy()
		mutate(l)
		out, err := asA.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			lease = out
		}
		return err
	}
	if err := update(func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptr.To[int32](1) }); err != nil {
		t.Fatalf("raising leaseTransitions by one: %v", err)
	}
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			mutate func(*coordinationv1.Lease)
			want   string
		}{
			{"B's name as holder", func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = ptr.To(b.Name) }, `not holder "replica-b"`},
			{"B as holder with B's UID", func(l *coordinationv1.Lease) {
				l.Spec.HolderIdentity = ptr.To(b.Name)
				l.Annotations[elector.HolderUIDAnnotation] = string(b.UID)
			}, `not holder "replica-b"`},
			{"a foreign holder", func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = ptr.To("ghost") }, `not holder "ghost"`},
			{"itself without its UID", func(l *coordinationv1.Lease) { delete(l.Annotations, elector.HolderUIDAnnotation) }, `holder-uid ""`},
			{"a huge duration", func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptr.To[int32](2147483647) }, "from 3 to 300"},
			{"a duration of 1s", func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptr.To[int32](1) }, "from 3 to 300"},
			{"no duration", func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = nil }, "from 3 to 300"},
			{"lowering leaseTransitions", func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptr.To[int32](0) }, "may not lower spec.leaseTransitions"},
			// At its maximum the next holder's increment overflows int32 and is refused as a lowering: the
			// group could never change hands again.
			{"leaseTransitions jumping to its maximum", func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptr.To[int32](math.MaxInt32) }, "nor raise it by more than one"},
			{"leaseTransitions jumping by two", func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptr.To[int32](3) }, "nor raise it by more than one"},
		} {
			refusedBy(t, tc.name, update(tc.mutate), policyElectorLeases, tc.want)
		}
		_, err := asA.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "someone-elses", Namespace: ns},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("pod_uuid"), LeaseDurationSeconds: ptr.To[int32](15)},
		}, metav1.CreateOptions{})
		refusedBy(t, "creating a Lease held by someone else", err, policyElectorLeases, `not holder "pod_uuid"`)
	})
	t.Run("allowed: renew, raise the token, release", func(t *testing.T) {
		if err := update(func(l *coordinationv1.Lease) { l.Spec.RenewTime = ptr.To(metav1.NowMicro()) }); err != nil {
			t.Errorf("renewal: %v", err)
		}
		if err := update(func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptr.To[int32](2) }); err != nil {
			t.Errorf("raising leaseTransitions: %v", err)
		}
		if err := update(func(l *coordinationv1.Lease) {
			l.Spec.HolderIdentity = ptr.To("")
			delete(l.Annotations, elector.HolderUIDAnnotation)
		}); err != nil {
			t.Errorf("release: %v", err)
		}
		if err := update(func(l *coordinationv1.Lease) {
			l.Spec.HolderIdentity = ptr.To(a.Name)
			l.Annotations = map[string]string{elector.HolderUIDAnnotation: string(a.UID)}
			l.Spec.LeaseTransitions = ptr.To[int32](3)
		}); err != nil {
			t.Errorf("acquiring a free Lease: %v", err)
		}
	})
	t.Run("refused: another workload's Lease", func(t *testing.T) {
		// Another workload in the namespace, running as another ServiceAccount, and a Lease of some other
		// controller: both out of reach of web's electors, even naming themselves as holder.
		createPod(t, cs, ns, "api", annotatedFor("api-0", "api"))
		for _, name := range []string{"api", "other-controller"} {
			if _, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(""), LeaseDurationSeconds: ptr.To[int32](15)}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.Spec.HolderIdentity, l.Annotations = ptr.To(a.Name), map[string]string{elector.HolderUIDAnnotation: string(a.UID)}
			_, err = asA.Update(ctx, l, metav1.UpdateOptions{})
			refusedBy(t, "taking Lease "+name, err, policyElectorLeases, "may write only the Leases of workloads that run as it")
		}
		_, err := asA.Create(ctx, own("not-mine", a), metav1.CreateOptions{})
		refusedBy(t, "creating a Lease no workload of its ServiceAccount uses", err, policyElectorLeases, "may write only the Leases of workloads that run as it")
	})
	t.Run("refused: clearing a holder that is another pod", func(t *testing.T) {
		// B holds it now (written with B's own token).
		asB := podToken(t, env, b).CoordinationV1().Leases(ns)
		l := lease.DeepCopy()
		l.Spec.HolderIdentity, l.Annotations = ptr.To(b.Name), map[string]string{elector.HolderUIDAnnotation: string(b.UID)}
		var err error
		if lease, err = asB.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("B acquiring with its own token: %v", err)
		}
		err = update(func(l *coordinationv1.Lease) {
			l.Spec.HolderIdentity = ptr.To("")
			delete(l.Annotations, elector.HolderUIDAnnotation)
		})
		refusedBy(t, "A clearing B's hold", err, policyElectorLeases, "or clear a holder that was itself")
	})
	t.Run("other identities' Lease writes are not ours to judge", func(t *testing.T) {
		// A pod-bound token of a ServiceAccount that is not an elector (another controller's client-go
		// elector writing its own holder format) is not matched by the policy.
		other := createPod(t, cs, ns, "controller", plainPod("controller-0"))
		l := controllerLease(t, cs, ns)
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := podToken(t, env, other).CoordinationV1().Leases(ns).Create(ctx, l, metav1.CreateOptions{})
			return err == nil, nil // RBAC caches need a moment to see the new binding
		})
		if err != nil {
			t.Errorf("another controller's pod-bound Lease write was refused; the policy must match our electors only")
		}
	})
}

// waitCanHold waits until the authorizer lets ServiceAccount sa hold Lease lease (the webhook wrote its Role when
// it admitted the pod; the authorizer's cache follows within moments).
func waitCanHold(t *testing.T, cs kubernetes.Interface, ns, sa, lease string) {
	t.Helper()
	attrs := authorizationv1.ResourceAttributes{Namespace: ns, Group: binding.HoldGroup, Resource: binding.HoldResource, Verb: binding.HoldVerb, Name: lease}
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return canI(t, cs, "system:serviceaccount:"+ns+":"+sa, attrs), nil
	})
	if err != nil {
		t.Fatalf("ServiceAccount %s/%s may not hold Lease %s 10s after its pod was admitted", ns, sa, lease)
	}
}

func annotatedFor(name, lease string) *corev1.Pod {
	pod := annotated(name)
	pod.Annotations[contract.AnnotationLeaseName] = lease
	return pod
}

// testPodLabels: nobody creates a pod with the role label or a fake member label, and nobody but the webhook's
// identity changes them later.
func testPodLabels(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset // system:masters: admission policies apply to everyone
	ctx := t.Context()
	ns := newNamespace(t, cs, nil)

	forged := plainPod("forged-leader")
	forged.Labels = map[string]string{"app": "web", contract.LabelRole: contract.RoleLeader}
	_, err := cs.CoreV1().Pods(ns).Create(ctx, withSA(forged, "web", t, cs, ns), metav1.CreateOptions{})
	refusedBy(t, "a pod created with the role label", err, policyPodLabels, "label leader-election/role is set only by")

	copied := annotated("copied-template")
	copied.Labels = map[string]string{contract.LabelRole: contract.RoleLeader}
	stored := createPod(t, cs, ns, "web", copied)
	if _, ok := stored.Labels[contract.LabelRole]; ok || stored.Labels[contract.LabelMember] != "true" {
		t.Errorf("annotated pod with the role label stored with labels %v, want it stripped and the member label set", stored.Labels)
	}

	fake := plainPod("fake-member")
	fake.Labels = map[string]string{contract.LabelMember: "true"}
	fake.Annotations = map[string]string{contract.AnnotationLeaseName: "web"}
	_, err = cs.CoreV1().Pods(ns).Create(ctx, withSA(fake, "web", t, cs, ns), metav1.CreateOptions{})
	refusedBy(t, "a pod with a member label the webhook did not write", err, policyPodLabels, "label leader-election/member is set only by")

	_, err = cs.CoreV1().Pods(ns).Patch(ctx, stored.Name, types.MergePatchType, labelPatch(map[string]*string{contract.LabelRole: ptr.To(contract.RoleLeader)}), metav1.PatchOptions{})
	refusedBy(t, "an administrator labelling a member as leader", err, policyPodLabels, "changed only by leader-election's controller")
	plain := createPod(t, cs, ns, "web", plainPod("enrol-me"))
	_, err = cs.CoreV1().Pods(ns).Patch(ctx, plain.Name, types.MergePatchType, labelPatch(map[string]*string{contract.LabelMember: ptr.To("true")}), metav1.PatchOptions{})
	refusedBy(t, "enrolling a pod by label", err, policyPodLabels, "label leader-election/member is set only by")

	// The status subresource writes metadata too (the API server resets only spec, owners and deletion there):
	// whoever may write pods/status (a node, a controller, an administrator) must meet the same rules.
	_, err = cs.CoreV1().Pods(ns).Patch(ctx, stored.Name, types.MergePatchType, labelPatch(map[string]*string{contract.LabelRole: ptr.To(contract.RoleLeader)}), metav1.PatchOptions{}, "status")
	refusedBy(t, "labelling a member as leader through pods/status", err, policyPodLabels, "changed only by leader-election's controller")
	_, err = cs.CoreV1().Pods(ns).Patch(ctx, plain.Name, types.MergePatchType, labelPatch(map[string]*string{contract.LabelMember: ptr.To("true")}), metav1.PatchOptions{}, "status")
	refusedBy(t, "enrolling a pod through pods/status", err, policyPodLabels, "label leader-election/member is set only by")
}

// testStrayLabel: a non-member pod labelled before the policies were installed loses the label.
func testStrayLabel(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset
	ctx := t.Context()
	ns := newNamespace(t, cs, nil)
	vapb, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, policyPodLabels, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, policyPodLabels, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	stray := withSA(plainPod("stray"), "web", t, cs, ns)
	stray.Labels = map[string]string{"app": "web", contract.LabelRole: contract.RoleLeader}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, stray, metav1.CreateOptions{})
		return err == nil, nil
	})
	vapb.ResourceVersion = ""
	if _, rerr := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, vapb, metav1.CreateOptions{}); rerr != nil {
		t.Fatal(rerr)
	}
	waitEnforced(t, cs)
	if err != nil {
		t.Fatal("could not create the stray pod with the policy unbound")
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "stray", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, labelled := p.Labels[contract.LabelRole]
		return !labelled && p.Labels["app"] == "web", nil
	})
	if err != nil {
		t.Fatalf("the stray pod kept its role label: %v", err)
	}
}

// testLabelMovesWithAReplicaKilled runs a second webhook replica, measures how long the label takes to follow
// the Lease with both replicas up, then kills one (SIGKILL) and measures again: every replica runs the
// controller, so the survivor moves the label without waiting for any lease of its own.
func testLabelMovesWithAReplicaKilled(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset
	ctx := t.Context()
	second := startWebhookReplica(t, env)
	ns := newNamespace(t, cs, nil)
	pods := []*corev1.Pod{createPod(t, cs, ns, "web", annotated("replica-a")), createPod(t, cs, ns, "web", annotated("replica-b"))}
	lease, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(pods[0].Name)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForLeader(t, cs, ns, pods[0].Name)
	move := func(to int) time.Duration {
		lease.Spec.HolderIdentity = ptr.To(pods[to].Name)
		start := time.Now()
		if lease, err = cs.CoordinationV1().Leases(ns).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitForLeader(t, cs, ns, pods[to].Name)
		return time.Since(start)
	}
	var both, survivor []time.Duration
	for i := range 6 {
		both = append(both, move((i+1)%2))
	}
	if err := second.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		survivor = append(survivor, move((i+1)%2))
	}
	t.Logf("label moved after the Lease changed hands: two replicas %v; one replica killed (SIGKILL), the other %v", both, survivor)
}

// startWebhookReplica starts another webhook process on its own port: it runs the label controllers as every
// replica does (the API server sends admission requests to the first).
func startWebhookReplica(t *testing.T, env *controlplane.Env) *webhookUnderTest {
	t.Helper()
	return startWebhookOn(t, env, controlplane.FreePort(t))
}

// testHandoverAndCandidates: the two Lease writes direct handover adds, each for its own pod only: the holder
// writing the Lease over to another pod (token + 1, handover-from = itself), and a pod's own candidate Lease.
func testHandoverAndCandidates(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset
	ctx := t.Context()
	ns := newNamespace(t, cs, nil)
	a := createPod(t, cs, ns, "web", annotated("replica-a"))
	b := createPod(t, cs, ns, "web", annotated("replica-b"))
	c := createPod(t, cs, ns, "web", annotated("replica-c"))
	asA := podToken(t, env, a).CoordinationV1().Leases(ns)
	asB := podToken(t, env, b).CoordinationV1().Leases(ns)
	asC := podToken(t, env, c).CoordinationV1().Leases(ns)
	waitCanHold(t, cs, ns, "web", "web")

	held, err := asA.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Annotations: map[string]string{elector.HolderUIDAnnotation: string(a.UID)}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.Name), LeaseDurationSeconds: ptr.To[int32](15), LeaseTransitions: ptr.To[int32](4)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod A creating its Lease: %v", err)
	}
	// handover is the Lease as held, written over to pod to by from, with the token raised by delta.
	handover := func(from string, to *corev1.Pod, delta int32) *coordinationv1.Lease {
		l := held.DeepCopy()
		l.Spec.HolderIdentity = ptr.To(to.Name)
		l.Annotations = map[string]string{elector.HolderUIDAnnotation: string(to.UID), elector.HandoverFromAnnotation: from}
		l.Spec.LeaseTransitions = ptr.To(*held.Spec.LeaseTransitions + delta)
		l.Spec.RenewTime = ptr.To(metav1.NowMicro())
		return l
	}
	t.Run("refused handovers", func(t *testing.T) {
		_, err := asB.Update(ctx, handover(b.Name, c, 1), metav1.UpdateOptions{})
		refusedBy(t, "pod B handing over a Lease A holds", err, policyElectorLeases, "hand a Lease it holds over")
		_, err = asA.Update(ctx, handover(a.Name, b, 2), metav1.UpdateOptions{})
		refusedByEither(t, "A handing over with token + 2", err, [2]string{policyElectorLeases, "nor raise it by more than one"}, [2]string{policyElectorLeases, "leaseTransitions + 1"})
		_, err = asA.Update(ctx, handover(a.Name, b, 0), metav1.UpdateOptions{})
		refusedBy(t, "A handing over without raising the token", err, policyElectorLeases, "leaseTransitions + 1")
		_, err = asA.Update(ctx, handover(c.Name, b, 1), metav1.UpdateOptions{})
		refusedBy(t, "A naming C in handover-from", err, policyElectorLeases, `handover-from "replica-c"`)
		noUID := handover(a.Name, b, 1)
		delete(noUID.Annotations, elector.HolderUIDAnnotation)
		_, err = asA.Update(ctx, noUID, metav1.UpdateOptions{})
		refusedBy(t, "A handing over to a pod without a UID", err, policyElectorLeases, "hand a Lease it holds over")
		selfMark := held.DeepCopy()
		selfMark.Annotations[elector.HandoverFromAnnotation] = c.Name
		_, err = asA.Update(ctx, selfMark, metav1.UpdateOptions{})
		refusedBy(t, "A renewing with a handover-from it adds", err, policyElectorLeases, `handover-from "replica-c"`)
	})
	t.Run("refused: a handover of a Lease the writer does not hold", func(t *testing.T) {
		// B takes the Lease (as a standby may once it expired); A, no longer the holder, may not hand it over.
		l := held.DeepCopy()
		l.Spec.HolderIdentity = ptr.To(b.Name)
		l.Annotations = map[string]string{elector.HolderUIDAnnotation: string(b.UID)}
		l.Spec.LeaseTransitions = ptr.To(*held.Spec.LeaseTransitions + 1)
		byB, err := asB.Update(ctx, l, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("B acquiring with its own token: %v", err)
		}
		stolen := byB.DeepCopy()
		stolen.Spec.HolderIdentity = ptr.To(c.Name)
		stolen.Annotations = map[string]string{elector.HolderUIDAnnotation: string(c.UID), elector.HandoverFromAnnotation: a.Name}
		stolen.Spec.LeaseTransitions = ptr.To(*byB.Spec.LeaseTransitions + 1)
		_, err = asA.Update(ctx, stolen, metav1.UpdateOptions{})
		refusedBy(t, "A handing over B's Lease", err, policyElectorLeases, "hand a Lease it holds over")
		// Give it back to A for the next test (B hands over, legitimately).
		back := byB.DeepCopy()
		back.Spec.HolderIdentity = ptr.To(a.Name)
		back.Annotations = map[string]string{elector.HolderUIDAnnotation: string(a.UID), elector.HandoverFromAnnotation: b.Name}
		back.Spec.LeaseTransitions = ptr.To(*byB.Spec.LeaseTransitions + 1)
		if byB, err = asB.Update(ctx, back, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("B handing the Lease over to A: %v", err)
		}
		confirm := byB.DeepCopy()
		delete(confirm.Annotations, elector.HandoverFromAnnotation)
		confirm.Spec.RenewTime = ptr.To(metav1.NowMicro())
		if held, err = asA.Update(ctx, confirm, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("A confirming the handover: %v", err)
		}
	})
	t.Run("allowed: the handover and the successor's confirmation", func(t *testing.T) {
		out, err := asA.Update(ctx, handover(a.Name, b, 1), metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("A handing over to B: %v", err)
		}
		// C may not confirm (nor renew as) B's handover; B may.
		asCWrite := out.DeepCopy()
		asCWrite.Spec.RenewTime = ptr.To(metav1.NowMicro())
		_, err = asC.Update(ctx, asCWrite, metav1.UpdateOptions{})
		refusedBy(t, "C confirming B's handover", err, policyElectorLeases, `not holder "replica-b"`)
		confirm := out.DeepCopy()
		delete(confirm.Annotations, elector.HandoverFromAnnotation)
		confirm.Spec.RenewTime = ptr.To(metav1.NowMicro())
		if _, err := asB.Update(ctx, confirm, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("B confirming the handover (token + 0, annotation removed): %v", err)
		}
	})

	candidateOf := func(pod *corev1.Pod, lease string) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name: elector.CandidateLeaseName(lease, pod.Name), Namespace: ns,
				Labels:          map[string]string{elector.CandidateForLabel: lease},
				Annotations:     map[string]string{elector.HolderUIDAnnotation: string(pod.UID), elector.CandidateHealthyAnnotation: "true"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(pod.Name), LeaseDurationSeconds: ptr.To[int32](15), RenewTime: ptr.To(metav1.NowMicro())},
		}
	}
	t.Run("candidate Leases: only one's own", func(t *testing.T) {
		own, err := asA.Create(ctx, candidateOf(a, "web"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("A creating its own candidate Lease: %v", err)
		}
		own.Annotations[elector.CandidateHealthyAnnotation] = "false"
		if _, err := asA.Update(ctx, own, metav1.UpdateOptions{}); err != nil {
			t.Errorf("A updating its own candidate Lease: %v", err)
		}
		_, err = asB.Create(ctx, candidateOf(a, "web"), metav1.CreateOptions{})
		refusedBy(t, "B creating A's candidate Lease", err, policyElectorLeases, "")
		// The handover rule does not apply to candidate Leases: A may not "hand over" its own candidate Lease to
		// B, which would advertise B (healthy, by A's word) under B's name and UID.
		handedOn := own.DeepCopy()
		handedOn.Spec.HolderIdentity = ptr.To(b.Name)
		handedOn.Annotations[elector.HolderUIDAnnotation] = string(b.UID)
		handedOn.Annotations[elector.HandoverFromAnnotation] = a.Name
		handedOn.Annotations[elector.CandidateHealthyAnnotation] = "true"
		handedOn.Spec.LeaseTransitions = ptr.To[int32](1)
		handedOn.ResourceVersion = ""
		if cur, err := cs.CoordinationV1().Leases(ns).Get(ctx, own.Name, metav1.GetOptions{}); err == nil {
			handedOn.ResourceVersion = cur.ResourceVersion
		}
		_, err = asA.Update(ctx, handedOn, metav1.UpdateOptions{})
		refusedBy(t, "A handing its candidate Lease over to B", err, policyElectorLeases, "")
		bAsA := candidateOf(b, "web")
		bAsA.Name = elector.CandidateLeaseName("web", a.Name)
		_, err = asB.Create(ctx, bAsA, metav1.CreateOptions{})
		refusedBy(t, "B creating a candidate Lease under A's name", err, policyElectorLeases, "may write only its own candidate Lease")
		current, err := cs.CoordinationV1().Leases(ns).Get(ctx, elector.CandidateLeaseName("web", a.Name), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		takeover := current.DeepCopy()
		takeover.Spec.HolderIdentity = ptr.To(b.Name)
		takeover.Annotations[elector.HolderUIDAnnotation] = string(b.UID)
		takeover.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: b.Name, UID: b.UID}}
		_, err = asB.Update(ctx, takeover, metav1.UpdateOptions{})
		refusedBy(t, "B overwriting A's candidate Lease", err, policyElectorLeases, "may write only its own candidate Lease")

		blocking := candidateOf(b, "web")
		blocking.OwnerReferences[0].BlockOwnerDeletion = ptr.To(true)
		_, err = asB.Create(ctx, blocking, metav1.CreateOptions{})
		refusedBy(t, "a candidate Lease that blocks its pod's deletion", err, policyElectorLeases, "no blockOwnerDeletion")
		foreignOwner := candidateOf(b, "web")
		foreignOwner.OwnerReferences[0].UID = a.UID
		_, err = asB.Create(ctx, foreignOwner, metav1.CreateOptions{})
		refusedBy(t, "a candidate Lease owned by another pod", err, policyElectorLeases, "owned by its pod alone")
		_, err = asB.Create(ctx, candidateOf(b, "api"), metav1.CreateOptions{})
		refusedBy(t, "a candidate for a Lease the pod may not hold", err, policyElectorLeases, "Lease api is not one")
		if _, err := asB.Create(ctx, candidateOf(b, "web"), metav1.CreateOptions{}); err != nil {
			t.Errorf("B creating its own candidate Lease: %v", err)
		}
		// A second owner that outlives the pod (here A's pod; a Deployment would do) keeps the garbage collector
		// from removing the candidate Lease: a dead pod advertised as healthy for ever.
		twoOwners := candidateOf(c, "web")
		twoOwners.OwnerReferences = append(twoOwners.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: a.Name, UID: a.UID})
		if _, err = asC.Create(ctx, twoOwners, metav1.CreateOptions{}); err == nil {
			_ = cs.CoordinationV1().Leases(ns).Delete(ctx, twoOwners.Name, metav1.DeleteOptions{}) // keep the next case independent
		}
		refusedBy(t, "a candidate Lease with a second owner", err, policyElectorLeases, "owned by its pod alone")
		// A Lease under C's candidate name that another holder wrote (another election's Lease of that name) may
		// not be turned into C's candidate Lease.
		foreign, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: elector.CandidateLeaseName("web", c.Name), Namespace: ns},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("another-controller"), LeaseDurationSeconds: ptr.To[int32](15)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		converted := candidateOf(c, "web")
		converted.ResourceVersion = foreign.ResourceVersion
		_, err = asC.Update(ctx, converted, metav1.UpdateOptions{})
		refusedBy(t, "C turning another holder's Lease into its candidate Lease", err, policyElectorLeases, "not one another pod of another name wrote")
	})
	t.Run("a candidate Lease under another election's Lease name is taken without its label", func(t *testing.T) {
		// Pod A's candidate Lease web-replica-a exists (above); a workload of another ServiceAccount elects in a
		// Lease of that very name. Its elector's write keeping the candidate label is judged as a candidate write
		// for web and refused (the election would be frozen); the elector drops the label (pkg/elector setHolder,
		// TestTakingALeaseThatCarriesACandidateLabelDropsTheLabel), and that write is allowed.
		name := elector.CandidateLeaseName("web", a.Name)
		other := createPod(t, cs, ns, "api", annotatedFor("api-0", name))
		waitCanHold(t, cs, ns, "api", name)
		asOther := podToken(t, env, other).CoordinationV1().Leases(ns)
		squatted, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		take := squatted.DeepCopy()
		take.Spec.HolderIdentity = ptr.To(other.Name)
		take.Annotations[elector.HolderUIDAnnotation] = string(other.UID)
		take.Spec.LeaseTransitions = ptr.To(transitionsOrZero(squatted) + 1)
		_, err = asOther.Update(ctx, take, metav1.UpdateOptions{})
		refusedBy(t, "the other election's elector keeping the candidate label", err, policyElectorLeases, "")
		delete(take.Labels, elector.CandidateForLabel)
		if _, err := asOther.Update(ctx, take, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("the other election's elector taking its Lease without the candidate label: %v", err)
		}
	})
}

// transitionsOrZero is the Lease's leaseTransitions, 0 when unset.
func transitionsOrZero(l *coordinationv1.Lease) int32 {
	if l.Spec.LeaseTransitions == nil {
		return 0
	}
	return *l.Spec.LeaseTransitions
}
