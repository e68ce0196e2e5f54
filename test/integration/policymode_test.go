package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/controlplane"
)

// TestManagerWithoutAdmission runs cmd/webhook as admission mode "policy" runs it (--admission=false
// --bind-workloads=true), as the webhook's identity with the shipped RBAC plus config/default-policy's read-only
// rules, under the shipped ValidatingAdmissionPolicies, against a control plane without kube-controller-manager:
// no pod is ever created, so every binding seen here was made from the workload, before its pods.
func TestManagerWithoutAdmission(t *testing.T) {
	env := controlplane.Start(t)
	cs := env.Clientset
	ctx := t.Context()
	if err := cluster.InstallRBAC(ctx, cs, webhookUser); err != nil {
		t.Fatal(err)
	}
	addWorkloadRules(t, cs)
	installPolicies(t, cs)

	health := fmt.Sprintf("127.0.0.1:%d", controlplane.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", controlplane.FreePort(t))
	proc := controlplane.StartProcess(t, "manager", controlplane.Build(t, "./cmd/webhook"), nil,
		"--kubeconfig", env.Kubeconfig(t, webhookUser),
		"--admission=false", "--bind-workloads=true",
		"--excluded-namespaces", "kube-system,leader-election-system",
		"--metrics-bind-address", metrics,
		"--health-probe-bind-address", health,
		// No certificate exists: a manager that still started the TLS server would never become ready.
		"--cert-dir", filepath.Join(t.TempDir(), "absent"),
	)
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return httpStatus("http://"+health+"/readyz") == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("manager not ready within 30s without a certificate:\n%s", proc.Output())
	}

	t.Run("no admission server: readiness has no webhook check, metrics no webhook series", func(t *testing.T) {
		if got := httpStatus("http://" + health + "/readyz/caches"); got != http.StatusOK {
			t.Errorf("/readyz/caches: %d, want 200 (is the per-check path real?)", got)
		}
		if got := httpStatus("http://" + health + "/readyz/webhook"); got != http.StatusNotFound {
			t.Errorf("/readyz/webhook: %d, want 404: no admission server runs in policy mode", got)
		}
		body := httpBody(t, "http://"+metrics+"/metrics")
		for _, series := range []string{"leader_election_webhook_admissions_total", "leader_election_webhook_certificate_expiration_timestamp_seconds"} {
			if strings.Contains(body, series) {
				t.Errorf("metrics carry %s; there is no admission server", series)
			}
		}
		if !strings.Contains(body, "controller_runtime_") {
			t.Errorf("metrics lack controller-runtime's series (is this the metrics endpoint?)")
		}
	})

	t.Run("a Deployment's ServiceAccount is bound before any pod, under the shipped policies", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		serviceAccount(t, cs, ns, "runner")
		created := time.Now()
		createWorkload(t, cs, deployment(ns, "web", "runner", map[string]string{contract.AnnotationEnabled: "true"}))
		waitCanHold(t, cs, ns, "runner", "web")
		t.Logf("Deployment created -> ServiceAccount may hold Lease web (authorizer): %s", time.Since(created).Round(time.Millisecond))
		rb, err := cs.RbacV1().RoleBindings(ns).Get(ctx, binding.Name("runner"), metav1.GetOptions{})
		if err != nil || rb.RoleRef.Name != binding.DefaultClusterRole {
			t.Errorf("RoleBinding %s: %v, roleRef %+v", binding.Name("runner"), err, rb.RoleRef)
		}
		if pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); len(pods.Items) != 0 {
			t.Fatalf("%d pods exist; this control plane must create none", len(pods.Items))
		}

		// A new Lease name in the template (a change, not a creation) is added to the same Role.
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Template.Annotations[contract.AnnotationLeaseName] = "web-v2"
		if _, err := cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitCanHold(t, cs, ns, "runner", "web-v2")
	})

	t.Run("enforcing namespaces: every StatefulSet and Deployment, also once the label is added", func(t *testing.T) {
		ns := newNamespace(t, cs, map[string]string{contract.LabelEnforce: "true"})
		serviceAccount(t, cs, ns, "db")
		createWorkload(t, cs, statefulSet(ns, "db", "db", nil))
		waitCanHold(t, cs, ns, "db", "db")

		later := newNamespace(t, cs, nil)
		serviceAccount(t, cs, later, "default")
		createWorkload(t, cs, deployment(later, "api", "", nil))
		label(t, cs, later, contract.LabelEnforce, "true")
		waitCanHold(t, cs, later, "default", "api")
	})

	t.Run("not bound: unannotated, opted out, excluded namespace", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		serviceAccount(t, cs, ns, "plain")
		serviceAccount(t, cs, ns, "out")
		createWorkload(t, cs, deployment(ns, "plain", "plain", nil))
		createWorkload(t, cs, deployment(ns, "out", "out", map[string]string{contract.AnnotationEnabled: "false"}))
		excluded := "leader-election-system"
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: excluded}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		serviceAccount(t, cs, excluded, "sys")
		createWorkload(t, cs, deployment(excluded, "sys", "sys", map[string]string{contract.AnnotationEnabled: "true"}))
		// A control in the same namespace, created last: once it is bound, the others had their turn.
		serviceAccount(t, cs, ns, "control")
		createWorkload(t, cs, deployment(ns, "control", "control", map[string]string{contract.AnnotationEnabled: "true"}))
		waitCanHold(t, cs, ns, "control", "control")
		for _, c := range [][3]string{{ns, "plain", "plain"}, {ns, "out", "out"}, {excluded, "sys", "sys"}} {
			attrs := authorizationv1.ResourceAttributes{Namespace: c[0], Group: binding.HoldGroup, Resource: binding.HoldResource, Verb: binding.HoldVerb, Name: c[2]}
			if canI(t, cs, "system:serviceaccount:"+c[0]+":"+c[1], attrs) {
				t.Errorf("ServiceAccount %s/%s may hold Lease %s; its workload is not injected", c[0], c[1], c[2])
			}
		}
	})

	t.Run("the identity only reads workloads and namespaces", func(t *testing.T) {
		testWorkloadReadOnly(t, env)
	})
}

// testWorkloadReadOnly: the read access policy mode adds to the webhook's identity is read access only, as real
// requests with its credentials and as SubjectAccessReviews.
func testWorkloadReadOnly(t *testing.T, env *controlplane.Env) {
	cs := env.Clientset
	ctx := t.Context()
	as := clientFor(t, env.Kubeconfig(t, webhookUser))
	ns := newNamespace(t, cs, nil)
	createWorkload(t, cs, deployment(ns, "victim", "", nil))
	createWorkload(t, cs, statefulSet(ns, "victim", "", nil))

	d, err := as.AppsV1().Deployments(ns).Get(ctx, "victim", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the identity cannot read a Deployment, which --bind-workloads needs: %v", err)
	}
	d.Spec.Template.Spec.Containers[0].Image = "attacker/image:1"
	_, err = as.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
	forbidden(t, "update a Deployment's image", err)
	_, err = as.AppsV1().Deployments(ns).Patch(ctx, "victim", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
	forbidden(t, "scale a Deployment to zero", err)
	forbidden(t, "delete a Deployment", as.AppsV1().Deployments(ns).Delete(ctx, "victim", metav1.DeleteOptions{}))
	_, err = as.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "planted", "", nil), metav1.CreateOptions{})
	forbidden(t, "create a Deployment", err)
	_, err = as.AppsV1().StatefulSets(ns).Patch(ctx, "victim", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{})
	forbidden(t, "scale a StatefulSet", err)
	// The enforce label enrols a namespace's workloads; the identity that reads it must not be able to set it.
	_, err = as.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(`{"metadata":{"labels":{"leader-election/enforce":"true"}}}`), metav1.PatchOptions{})
	forbidden(t, "label a namespace enforce", err)
	forbidden(t, "delete a namespace", as.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}))

	for _, a := range []authorizationv1.ResourceAttributes{
		{Group: "apps", Resource: "deployments", Subresource: "scale", Verb: "update", Namespace: ns},
		{Group: "apps", Resource: "statefulsets", Verb: "delete", Namespace: ns},
		{Group: "apps", Resource: "replicasets", Verb: "list", Namespace: ns},
		{Group: "apps", Resource: "daemonsets", Verb: "create", Namespace: ns},
		{Resource: "namespaces", Verb: "create"},
		{Resource: "namespaces", Subresource: "finalize", Verb: "update", Name: ns},
		{Resource: "secrets", Verb: "list", Namespace: ns},
		{Resource: "configmaps", Verb: "get", Namespace: ns},
	} {
		if canI(t, cs, webhookUser, a) {
			t.Errorf("the webhook's identity may %s %s/%s in %q", a.Verb, a.Resource, a.Subresource, a.Namespace)
		}
	}
}

// addWorkloadRules adds config/default-policy's rules (what --bind-workloads needs) to the installed webhook
// ClusterRole, as that overlay does.
func addWorkloadRules(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "config", "default-policy", "webhook_role_workloads.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ops []struct {
		Op    string            `json:"op"`
		Path  string            `json:"path"`
		Value rbacv1.PolicyRule `json:"value"`
	}
	if err := yaml.Unmarshal(data, &ops); err != nil {
		t.Fatal(err)
	}
	webhookRole := readObject[*rbacv1.ClusterRole](t, "config/rbac/webhook_role.yaml")
	role, err := cs.RbacV1().ClusterRoles().Get(t.Context(), webhookRole.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Op != "add" || op.Path != "/rules/-" {
			t.Fatalf("webhook_role_workloads.yaml: op %s %s, want only additions of rules", op.Op, op.Path)
		}
		role.Rules = append(role.Rules, op.Value)
	}
	if _, err := cs.RbacV1().ClusterRoles().Update(t.Context(), role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func forbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("the webhook's identity could %s: got %v, want Forbidden", what, err)
	}
}

func serviceAccount(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func label(t *testing.T, cs kubernetes.Interface, ns, key, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, key, value)
	if _, err := cs.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func workloadTemplate(name, sa string, annotations map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}, Annotations: annotations},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "example/app:1.0"}}},
	}
}

func deployment(ns, name, sa string, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](3),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: workloadTemplate(name, sa, annotations),
	}}
}

func statefulSet(ns, name, sa string, annotations map[string]string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](3),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: workloadTemplate(name, sa, annotations),
	}}
}

// createWorkload creates a Deployment or StatefulSet as the admin.
func createWorkload(t *testing.T, cs kubernetes.Interface, obj any) {
	t.Helper()
	var err error
	switch w := obj.(type) {
	case *appsv1.Deployment:
		_, err = cs.AppsV1().Deployments(w.Namespace).Create(t.Context(), w, metav1.CreateOptions{})
	case *appsv1.StatefulSet:
		_, err = cs.AppsV1().StatefulSets(w.Namespace).Create(t.Context(), w, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
