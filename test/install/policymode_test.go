package install

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/admissionpolicy"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/controlplane"
)

// injectionObjects are the objects of objs that pkg/admissionpolicy generates: every MutatingAdmissionPolicy, the
// ValidatingAdmissionPolicies (and bindings) named <prefix>-injection*, and the parameter ConfigMap.
func injectionObjects(objs objects, prefix string) objects {
	var out objects
	for _, u := range objs {
		name := strings.TrimPrefix(u.GetName(), prefix)
		switch u.GetKind() {
		case "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding":
			out = append(out, u)
		case "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ConfigMap":
			if strings.HasPrefix(name, "-injection") {
				out = append(out, u)
			}
		}
	}
	return out
}

// TestPolicyModeConfigMatchesChart: the chart in admission mode "policy" and config/policy-mode install the same
// injection objects, field for field where it matters; the default (webhook) mode renders none of them.
func TestPolicyModeConfigMatchesChart(t *testing.T) {
	chart := injectionObjects(helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace, values: "admission:\n  mode: policy\n"}), admissionpolicy.NamePrefix)
	config := injectionObjects(kustomizeBuild(t, "policy-mode"), admissionpolicy.NamePrefix)
	if len(chart) != 13 {
		t.Errorf("the chart in policy mode renders %d injection objects, want 13 (2 mutating and 4 validating policies, their bindings, the parameters): %v", len(chart), chart.keys())
	}
	if got := injectionObjects(helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace}), admissionpolicy.NamePrefix); len(got) > 0 {
		t.Errorf("the chart in webhook mode renders policy-mode objects: %v", got.keys())
	}
	// kustomize gives the cluster-scoped MutatingAdmissionPolicies a namespace it does not know they lack; compare
	// by kind and name.
	byName := func(objs objects) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, u := range objs {
			m[u.GetKind()+"/"+u.GetName()] = u
		}
		return m
	}
	fromChart, fromConfig := byName(chart), byName(config)
	for k := range fromConfig {
		if _, ok := fromChart[k]; !ok {
			t.Errorf("%s: in config/policy-mode, not rendered by the chart", k)
		}
	}
	for k, c := range fromChart {
		g, ok := fromConfig[k]
		if !ok {
			t.Errorf("%s: rendered by the chart, missing from config/policy-mode", k)
			continue
		}
		for _, p := range whatMatters[c.GetKind()] {
			want, _, _ := unstructured.NestedFieldNoCopy(c.Object, p...)
			got, _, _ := unstructured.NestedFieldNoCopy(g.Object, p...)
			for _, d := range diff(k+"."+strings.Join(p, "."), normalize(want), normalize(got)) {
				t.Errorf("%s (chart, then config/policy-mode)", d)
			}
		}
	}
}

// TestPolicyModeChartInjects installs the chart's policy-mode objects with non-default values on a real API server:
// an annotated pod gets the elector with the values' defaults, a bad annotation is refused naming it, and the
// release's own namespace is left alone.
func TestPolicyModeChartInjects(t *testing.T) {
	const namespace = "le-system"
	values := "admission:\n  mode: policy\nelector:\n  port: 9100\n  leaseDuration: 20s\n  traffic: readiness\n  image:\n    repository: example/elector\n    tag: v9\n"
	rendered := helmTemplate(t, release{name: "le", namespace: namespace, values: values})
	objs := injectionObjects(rendered, "le-leader-election")
	if len(objs) != 13 {
		t.Fatalf("rendered %d injection objects, want 13: %v", len(objs), objs.keys())
	}
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
		objs = append(objs, rendered.ofKind(kind)...)
	}
	env := controlplane.Start(t)
	cs := env.Clientset
	ctx := t.Context()
	createNamespace(t, cs, namespace, nil)
	apply(t, env.Config, objs)
	createNamespace(t, cs, "apps", nil)
	createServiceAccount(t, cs, "apps", "default")
	createServiceAccount(t, cs, namespace, "default")

	pod := plainPod("web", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "web"})
	var stored *corev1.Pod
	var err error
	// The policies take effect once the API server's informers have seen them.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		stored, err = cs.CoreV1().Pods("apps").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && len(stored.Spec.InitContainers) > 0 {
			break
		}
	}
	if err != nil {
		t.Fatalf("annotated pod refused: %v", err)
	}
	if len(stored.Spec.InitContainers) != 1 || stored.Spec.InitContainers[0].Name != contract.ContainerName {
		t.Fatalf("annotated pod not injected: %s", describe(stored))
	}
	elector := stored.Spec.InitContainers[0]
	electorEnv := map[string]string{}
	for _, e := range elector.Env {
		electorEnv[e.Name] = e.Value
	}
	if elector.Image != "example/elector:v9" || elector.Ports[0].ContainerPort != 9100 || electorEnv[contract.EnvLeaseDuration] != "20s" || electorEnv[contract.EnvReadiness] != "leader" {
		t.Errorf("the elector does not carry the chart's values (image example/elector:v9, port 9100, lease 20s, readiness leader): image %s, ports %v, env %v",
			elector.Image, elector.Ports, electorEnv)
	}
	if v := stored.Annotations[contract.AnnotationInjected]; v != "v0.1.0/"+admissionpolicy.InjectedSuffix {
		t.Errorf("annotation %s is %q, want the chart's appVersion and %q", contract.AnnotationInjected, v, admissionpolicy.InjectedSuffix)
	}

	bad := plainPod("bad", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "web", contract.AnnotationPort: "http"})
	_, err = cs.CoreV1().Pods("apps").Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil || !strings.Contains(err.Error(), `annotation leader-election/port: "http" is not accepted`) {
		t.Errorf("a bad port annotation: got %v, want a refusal naming the annotation and its value", err)
	}

	// The parameters decide the image every annotated pod runs: the chart's own identity may not change them.
	user := "system:serviceaccount:" + namespace + ":le-leader-election-webhook"
	allowed := func(verb, resource, name string) bool {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: resource, Name: name},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	if !allowed("patch", "pods", "any") {
		t.Fatalf("control: %s may not patch pods; the chart's RBAC is not installed as the test assumes", user)
	}
	for _, verb := range []string{"create", "update", "patch", "delete"} {
		if allowed(verb, "configmaps", "le-leader-election-injection") {
			t.Errorf("%s may %s the injection's parameters", user, verb)
		}
	}

	own, err := cs.CoreV1().Pods(namespace).Create(ctx, plainPod("own", map[string]string{contract.AnnotationEnabled: "true"}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("a pod in the release's namespace refused: %v", err)
	}
	if len(own.Spec.InitContainers) > 0 {
		t.Errorf("a pod in the release's namespace was injected: %s", describe(own))
	}

	testWithoutParameters(t, cs, namespace, "le-leader-election-injection")
}

// testWithoutParameters deletes the injection's parameter ConfigMap, as deleting the install's namespace or a
// `helm uninstall` (which deletes ConfigMaps before the policies' bindings) does, and checks what
// docs/policy-mode.md says of it: the bindings that take the parameters skip every pod (parameterNotFoundAction
// Allow), so a pod without the annotation is admitted as if leader-election were not installed, while the guards,
// which take no parameters, refuse every pod that needs an elector (opted in, or an enforcing namespace's
// replica, opting out or not) naming the missing ConfigMap, and a pod marked refused with its own text.
func testWithoutParameters(t *testing.T, cs kubernetes.Interface, namespace, params string) {
	ctx := t.Context()
	if err := cs.CoreV1().ConfigMaps(namespace).Delete(ctx, params, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	missing := admissionpolicy.MissingParamsMessage(params, namespace)
	create := func(ns string, pod *corev1.Pod) (*corev1.Pod, error) {
		return cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}
	opted := plainPod("opted", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "web"})
	var err error
	// The API server's informers see the deletion within moments; until then the pod is injected.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err = create("apps", opted); err != nil {
			break
		}
	}
	if err == nil || !strings.HasSuffix(err.Error(), missing) {
		t.Fatalf("an opted-in pod with the parameters deleted: got %v, want the guard's refusal %q: never admitted without its elector", err, missing)
	}
	for _, pod := range []*corev1.Pod{plainPod("plain", nil), plainPod("opted-out", map[string]string{contract.AnnotationEnabled: "false"})} {
		stored, err := create("apps", pod)
		if err != nil {
			t.Errorf("pod %s (not opted in) with the parameters deleted: %v; only pods that need an elector may be refused", pod.Name, err)
		} else if len(stored.Spec.InitContainers) > 0 || stored.Annotations[admissionpolicy.RefusedAnnotation] != "" {
			t.Errorf("pod %s (not opted in) with the parameters deleted was changed: %s, annotations %v", pod.Name, describe(stored), stored.Annotations)
		}
	}
	if _, err := create("apps", plainPod("bad-value", map[string]string{contract.AnnotationEnabled: "yes"})); err == nil || !strings.HasSuffix(err.Error(), missing) {
		t.Errorf("a pod annotated %s: \"yes\" with the parameters deleted: got %v, want the guard's refusal (refused in either mode, never run without an elector)", contract.AnnotationEnabled, err)
	}
	const marked = "marked by its author"
	if _, err := create("apps", plainPod("marked", map[string]string{contract.AnnotationEnabled: "true", admissionpolicy.RefusedAnnotation: marked})); err == nil || !strings.HasSuffix(err.Error(), ": "+marked) {
		t.Errorf("a pod annotated %s with the parameters deleted: got %v, want it refused with the annotation's text", admissionpolicy.RefusedAnnotation, err)
	}

	createNamespace(t, cs, "enforcing", map[string]string{contract.LabelEnforce: "true"})
	createServiceAccount(t, cs, "enforcing", "default")
	replica := func(name string, annotations map[string]string) *corev1.Pod {
		pod := plainPod(name, annotations)
		pod.Labels = map[string]string{"pod-template-hash": "5d4f8c7b9"}
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f8c7b9", UID: "0b5c2d1e-0000-4000-8000-000000000001", Controller: ptr.To(true)}}
		return pod
	}
	for _, pod := range []*corev1.Pod{replica("replica", nil), replica("replica-opted-out", map[string]string{contract.AnnotationEnabled: "false"}),
		replica("replica-opted-in", map[string]string{contract.AnnotationEnabled: "true"})} {
		if _, err := create("enforcing", pod); err == nil || !strings.HasSuffix(err.Error(), missing) {
			t.Errorf("an enforcing namespace's %s with the parameters deleted: got %v, want the guard's refusal %q", pod.Name, err, missing)
		}
	}
	if _, err := create("enforcing", plainPod("bare", nil)); err != nil {
		t.Errorf("a bare pod in an enforcing namespace (not enrolled) with the parameters deleted: %v", err)
	}

	createServiceAccount(t, cs, "kube-system", "default")
	for _, ns := range []string{namespace, "kube-system"} {
		if _, err := create(ns, plainPod("recovery", map[string]string{contract.AnnotationEnabled: "true"})); err != nil {
			t.Errorf("a pod in %s with the parameters deleted: %v; the install's namespace and kube-system are never served", ns, err)
		}
	}
}

// TestPolicyModeManagerRefusesBadDefaults runs the manager binary with the chart's arguments in admission mode
// policy and elector values the policies would refuse every annotated pod for: it must stop at start naming the
// value, so that the rollout (and `helm install --wait`) fails as it does in webhook mode, instead of installing
// cleanly and refusing every annotated pod with a message about annotations the pod does not carry.
func TestPolicyModeManagerRefusesBadDefaults(t *testing.T) {
	bin := controlplane.Build(t, "./cmd/webhook")
	for _, tc := range []struct{ values, want string }{
		{"elector: {retryPeriod: 100ms}", "retry-period (100ms) must be at least 250ms"},
		{"elector: {leaseDuration: 5s}", "lease-duration (5s) must be longer than renew-deadline (10s)"},
		{"elector: {resources: {cpuLimit: 1m}}", "CPU limit 1m is below CPU request 10m"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			objs := helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace, values: policyMode + "\n" + tc.values})
			deploy := as[appsv1.Deployment](t, objs.one(t, "Deployment", ""))
			args := append(slices.Clone(deploy.Spec.Template.Spec.Containers[0].Args), "--kubeconfig="+filepath.Join(t.TempDir(), "absent"))
			out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Errorf("the manager with %s: exit %v, output:\n%s\nwant exit code 2 and %q", tc.values, err, out, tc.want)
			}
		})
	}
}
