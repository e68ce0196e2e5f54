package install

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/controlplane"
)

// withCRDs installs cert-manager's CustomResourceDefinitions, and the Prometheus Operator's that the monitoring
// objects need, before the control plane is handed over: the API server validates what the chart renders.
func withCRDs(tb testing.TB) controlplane.Option {
	paths := append([]string{certManagerCRDDir(tb)}, monitoringCRDFiles(tb)...)
	return func(e *envtest.Environment) {
		e.CRDDirectoryPaths = append(e.CRDDirectoryPaths, paths...)
		e.ErrorIfCRDPathMissing = true
	}
}

// TestInstallOnControlPlane creates everything each install renders on a real kube-apiserver (one per install,
// since they share cluster-scoped names), then checks what the installed configuration does with pods while no
// webhook answers: the webhook's own pod is admitted under the restricted Pod Security Standard, annotated pods
// elsewhere are refused (admitted in admission mode policy, which calls no webhook), and every other pod is
// untouched.
func TestInstallOnControlPlane(t *testing.T) {
	for _, in := range installs(t) {
		t.Run(in.name, func(t *testing.T) {
			env := controlplane.Start(t, withCRDs(t))
			ctx := t.Context()
			cs := env.Clientset

			if in.notes != nil {
				checkNotes(t, env, in)
			}
			if len(in.objects.ofKind("Namespace")) == 0 {
				// Helm's --create-namespace, with the label an administrator should add.
				createNamespace(t, cs, in.namespace, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
			}
			applied := apply(t, env.Config, in.objects)
			if len(applied) != len(in.objects) {
				t.Fatalf("applied %d of %d objects", len(applied), len(in.objects))
			}
			ns, err := cs.CoreV1().Namespaces().Get(ctx, in.namespace, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Fatalf("namespace %s does not enforce restricted: %v", in.namespace, ns.Labels)
			}

			deploy := as[appsv1.Deployment](t, in.objects.one(t, "Deployment", ""))
			webhookPod := func(name string) *corev1.Pod {
				tpl := deploy.Spec.Template.DeepCopy()
				return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tpl.Labels, Annotations: tpl.Annotations}, Spec: tpl.Spec}
			}
			other := "apps"
			createNamespace(t, cs, other, nil)
			createServiceAccount(t, cs, other, "default")

			annotatedInOwnNamespace := webhookPod("annotated-webhook-pod")
			annotatedInOwnNamespace.Annotations = map[string]string{contract.AnnotationEnabled: "true"}
			insecure := webhookPod("without-security-context")
			insecure.Spec.SecurityContext, insecure.Spec.Containers[0].SecurityContext = nil, nil

			// Policies take effect a moment after they are created: wait until a dry-run of the annotated pod
			// comes back injected.
			if in.policyMode && len(in.objects.ofKind("MutatingAdmissionPolicy")) > 0 {
				probe := plainPod("probe", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "x"})
				err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
					p, err := cs.CoreV1().Pods(other).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
					return err == nil && hasElector(p), nil
				})
				if err != nil {
					t.Fatalf("admission mode policy: an annotated pod was not injected within 30s of installing the policies")
				}
			}
			// Webhook mode: an annotated pod is refused while no webhook answers. Policy mode: no webhook is called
			// at all, so the same pod is admitted (the API server's own policies inject it).
			annotatedWhileDown := `failed calling webhook "opt-in.pods.leader-election.io"`
			if in.policyMode {
				annotatedWhileDown = ""
			}
			for _, tc := range []struct {
				name      string
				namespace string
				pod       *corev1.Pod
				// refused is a substring of the API server's refusal; empty means admitted.
				refused string
			}{
				{"the webhook's pod under Pod Security restricted", in.namespace, webhookPod("webhook"), ""},
				{"the webhook's own namespace never reaches the webhook", in.namespace, annotatedInOwnNamespace, ""},
				{"control: restricted is enforced", in.namespace, insecure, "violates PodSecurity \"restricted:latest\""},
				{"a pod without the annotation is untouched", other, plainPod("plain", nil), ""},
				{"an annotated pod while the webhook is down", other, plainPod("annotated", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "x"}),
					annotatedWhileDown},
			} {
				t.Run(tc.name, func(t *testing.T) {
					stored, err := cs.CoreV1().Pods(tc.namespace).Create(ctx, tc.pod, metav1.CreateOptions{})
					switch {
					case tc.refused == "" && err != nil:
						t.Fatalf("pod %s/%s refused: %v", tc.namespace, tc.pod.Name, err)
					case tc.refused != "" && err == nil:
						t.Fatalf("pod %s/%s admitted, want refused with %q", tc.namespace, tc.pod.Name, tc.refused)
					case tc.refused != "" && !strings.Contains(err.Error(), tc.refused):
						t.Fatalf("pod %s/%s refused with %v, want %q", tc.namespace, tc.pod.Name, err, tc.refused)
					}
					// In policy mode the API server injects by itself: the annotated pod outside the install's
					// namespace has the elector, every other pod is as it was sent.
					if in.policyMode && len(in.objects.ofKind("MutatingAdmissionPolicy")) > 0 && err == nil {
						want := tc.namespace == other && tc.pod.Annotations[contract.AnnotationEnabled] == "true"
						if got := hasElector(stored); got != want {
							t.Errorf("pod %s/%s: elector injected %v, want %v (admission mode policy)", tc.namespace, tc.pod.Name, got, want)
						}
					}
				})
			}
		})
	}
}

// hasElector reports whether the pod carries the injected elector, as a native sidecar or a container.
func hasElector(p *corev1.Pod) bool {
	is := func(c corev1.Container) bool { return c.Name == contract.ContainerName }
	return slices.ContainsFunc(p.Spec.InitContainers, is) || slices.ContainsFunc(p.Spec.Containers, is)
}

// kindOrder is the order objects are created in: namespaces first, the webhook configuration last (as Helm does),
// so that nothing the install creates is sent to a webhook that is not there yet.
var kindOrder = []string{
	"Namespace", "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Service", "NetworkPolicy",
	"Deployment", "PodDisruptionBudget", "Issuer", "Certificate", "ConfigMap", "ServiceMonitor", "PodMonitor",
	"PrometheusRule", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "MutatingWebhookConfiguration",
}

// apply creates every object with server-side apply and returns what the API server stored. A kind the order does
// not know fails the test, so a new template is not silently left out.
func apply(tb testing.TB, cfg *rest.Config, objs objects) []*unstructured.Unstructured {
	tb.Helper()
	resource := resources(tb, cfg)
	sorted := slices.Clone(objs)
	for _, u := range sorted {
		if !slices.Contains(kindOrder, u.GetKind()) {
			tb.Fatalf("%s: add kind %s to kindOrder", key(u), u.GetKind())
		}
	}
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int {
		return slices.Index(kindOrder, a.GetKind()) - slices.Index(kindOrder, b.GetKind())
	})
	var out []*unstructured.Unstructured
	for _, u := range sorted {
		stored, err := resource(u).Apply(context.Background(), u.GetName(), u, metav1.ApplyOptions{FieldManager: "install-test", Force: true})
		if err != nil {
			tb.Fatalf("creating %s: %v", key(u), err)
		}
		if stored.GetUID() == "" || stored.GetResourceVersion() == "" {
			tb.Fatalf("%s: the API server returned no stored object", key(u))
		}
		out = append(out, stored)
	}
	return out
}

// resources returns the dynamic client of an object's resource (in its namespace, where it has one), found by
// discovery; a kind the API server does not serve fails the test.
func resources(tb testing.TB, cfg *rest.Config) func(*unstructured.Unstructured) dynamic.ResourceInterface {
	tb.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return func(u *unstructured.Unstructured) dynamic.ResourceInterface {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			tb.Fatalf("%s: %v", key(u), err)
		}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			return dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		return dyn.Resource(m.Resource)
	}
}

func createNamespace(tb testing.TB, cs kubernetes.Interface, name string, labels map[string]string) {
	tb.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatalf("creating namespace %s: %v", name, err)
	}
}

// createServiceAccount stands in for the controller that creates "default" in every namespace (there is no
// controller manager here).
func createServiceAccount(tb testing.TB, cs kubernetes.Interface, namespace, name string) {
	tb.Helper()
	_, err := cs.CoreV1().ServiceAccounts(namespace).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatalf("creating ServiceAccount %s/%s: %v", namespace, name, err)
	}
}

func plainPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1.0"}}},
	}
}

// describe is for failure messages about pods.
func describe(p *corev1.Pod) string {
	var names []string
	for _, c := range p.Spec.InitContainers {
		names = append(names, "init:"+c.Name)
	}
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	return fmt.Sprintf("pod %s/%s containers %v annotations %v", p.Namespace, p.Name, names, p.Annotations)
}

// checkNotes runs `helm install --dry-run=client` against the control plane and checks that the notes tell the
// user how to opt in and, in traffic mode label, how a Service reaches the leader.
func checkNotes(tb testing.TB, env *controlplane.Env, in install) {
	tb.Helper()
	kubeconfig := env.Kubeconfig(tb, "admin", "system:masters")
	args := []string{"install", in.release.name, chartDir, "--namespace", in.namespace, "--dry-run=client", "--kubeconfig", kubeconfig}
	if in.release.values != "" {
		args = append(args, "--values", writeFile(tb, "values.yaml", in.release.values))
	}
	out, err := run(tb, "helm", args...)
	if err != nil {
		tb.Fatal(err)
	}
	_, notes, ok := strings.Cut(out, "NOTES:")
	if !ok {
		tb.Fatalf("helm install printed no NOTES:\n%s", out)
	}
	for _, want := range in.notes {
		if !strings.Contains(notes, want) {
			tb.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}
}
