// Package integration checks the webhook through a real kube-apiserver: registered in a real
// MutatingWebhookConfiguration, serving as its own process with its own least-privilege RBAC.
package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/leaderlabel"
	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/controlplane"
)

// webhookUser is the webhook's ServiceAccount username, which the shipped policies recognise it by.
const webhookUser = cluster.WebhookUser

// webhookUnderTest is the running webhook and how to observe it.
type webhookUnderTest struct {
	proc        *controlplane.Process
	metricsAddr string
}

// startWithShippedWebhook starts a control plane whose API server calls the webhook as config/webhook registers
// it (rules, matchConditions, failure policy), served from this machine's loopback.
func startWithShippedWebhook(t *testing.T) *controlplane.Env {
	t.Helper()
	mwc := readObject[*admissionregistrationv1.MutatingWebhookConfiguration](t, "config/webhook/manifests.yaml")
	return controlplane.Start(t, controlplane.WithWebhooks(envtest.WebhookInstallOptions{
		MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{mwc},
		LocalServingHost: "127.0.0.1",
	}))
}

// TestWebhook starts one control plane and one webhook process, then runs every scenario against them. The
// webhook-down scenario runs last because it stops the webhook.
func TestWebhook(t *testing.T) {
	env := startWithShippedWebhook(t)
	cs := env.Clientset
	ctx := t.Context()

	// The shipped RBAC, with the webhook running as a user bound to its ClusterRole and nothing else.
	if err := cluster.InstallRBAC(ctx, cs, webhookUser); err != nil {
		t.Fatal(err)
	}
	electorRole := readObject[*rbacv1.ClusterRole](t, "config/rbac/elector_role.yaml")
	installPolicies(t, cs)

	wh := startWebhook(t, env)
	webhookKubeconfig := env.Kubeconfig(t, webhookUser)

	t.Run("annotated pod is stored with the elector", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		pod := createPod(t, cs, ns, "web", annotated("web"))
		sidecar := findContainer(pod.Spec.InitContainers, contract.ContainerName)
		if sidecar == nil {
			t.Fatalf("stored pod has no %s init container: %+v", contract.ContainerName, pod.Spec.InitContainers)
		}
		if sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("sidecar-mode auto against v1.37 must give a native sidecar, got restartPolicy %v", sidecar.RestartPolicy)
		}
		if sidecar.ReadinessProbe == nil || sidecar.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("sidecar has no /readyz readiness probe: %+v", sidecar.ReadinessProbe)
		}
		if got := pod.Annotations[contract.AnnotationInjected]; !strings.HasPrefix(got, "v0.1.0/") {
			t.Errorf("annotation %s = %q", contract.AnnotationInjected, got)
		}
		// The webhook binds once the pod is stored (never from the review itself): wait for it.
		waitCanHold(t, cs, ns, "web", "web")
		rb, err := cs.RbacV1().RoleBindings(ns).Get(ctx, binding.Name("web"), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("RoleBinding for ServiceAccount web: %v", err)
		}
		sa, _ := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "web", metav1.GetOptions{})
		if len(rb.OwnerReferences) != 1 || rb.OwnerReferences[0].UID != sa.UID {
			t.Errorf("RoleBinding owners = %+v, want the ServiceAccount %s", rb.OwnerReferences, sa.UID)
		}
		if rb.RoleRef.Name != electorRole.Name {
			t.Errorf("RoleBinding refers to %q, want %q", rb.RoleRef.Name, electorRole.Name)
		}
	})

	t.Run("unannotated pods never reach the webhook", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		before := wh.requests(t)
		for i := range 5 {
			createPod(t, cs, ns, "web", plainPod(fmt.Sprintf("plain-%d", i)))
		}
		if after := wh.requests(t); after != before {
			t.Fatalf("webhook received %d requests for 5 unannotated pods, want 0", after-before)
		}
		createPod(t, cs, ns, "web", annotated("counted"))
		if after := wh.requests(t); after != before+1 {
			t.Fatalf("webhook received %d requests for one annotated pod, want 1 (is the counter real?)", after-before)
		}
	})

	t.Run("bad annotation is refused with the key and value", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		pod := annotated("bad")
		pod.Annotations[contract.AnnotationPort] = "99999"
		_, err := cs.CoreV1().Pods(ns).Create(ctx, withSA(pod, "web", t, cs, ns), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), `annotation leader-election/port: "99999" is not accepted`) {
			t.Fatalf("create = %v, want a refusal naming leader-election/port and 99999", err)
		}
	})

	t.Run("injected pod passes PodSecurity restricted", func(t *testing.T) {
		ns := newNamespace(t, cs, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		pod := restricted(annotated("locked-down"))
		stored := createPod(t, cs, ns, "web", pod)
		if findContainer(stored.Spec.InitContainers, contract.ContainerName) == nil {
			t.Fatal("pod admitted without the elector")
		}
		// The same namespace refuses a pod that is not restricted: PodSecurity is really enforcing.
		loose := annotated("loose")
		_, err := cs.CoreV1().Pods(ns).Create(ctx, withSA(loose, "web", t, cs, ns), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Fatalf("a non-restricted pod was not refused by PodSecurity: %v", err)
		}
	})

	t.Run("dry-run create leaves no RoleBinding", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		pod := withSA(annotated("dry"), "dry", t, cs, ns)
		out, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if findContainer(out.Spec.InitContainers, contract.ContainerName) == nil {
			t.Fatal("a dry-run create must show the injected pod")
		}
		_, err = cs.RbacV1().RoleBindings(ns).Get(ctx, binding.Name("dry"), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("RoleBinding after a dry-run create: err = %v, want NotFound", err)
		}
	})

	t.Run("the pod's ServiceAccount may use Leases in its namespace and nothing else", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		other := newNamespace(t, cs, nil)
		createPod(t, cs, ns, "runner", annotated("rbac"))
		waitCanHold(t, cs, ns, "runner", "web")
		user := "system:serviceaccount:" + ns + ":runner"
		allowed := []authorizationv1.ResourceAttributes{
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "web"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "get", Name: "web"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "watch"},
			{Namespace: ns, Group: "events.k8s.io", Resource: "events", Verb: "create"},
		}
		denied := []authorizationv1.ResourceAttributes{
			{Namespace: ns, Group: "", Resource: "secrets", Verb: "get"},
			{Namespace: ns, Group: "", Resource: "secrets", Verb: "list"},
			{Namespace: ns, Group: "", Resource: "pods", Verb: "patch"},
			{Namespace: ns, Group: "", Resource: "pods", Verb: "get"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "list"},
			{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "delete", Name: "web"},
			{Namespace: other, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "web"},
			{Namespace: other, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"},
			{Namespace: "kube-system", Group: "coordination.k8s.io", Resource: "leases", Verb: "get"},
		}
		for _, attrs := range allowed {
			if !canI(t, cs, user, attrs) {
				t.Errorf("%s may not %s %s in %s, want allowed", user, attrs.Verb, attrs.Resource, attrs.Namespace)
			}
		}
		for _, attrs := range denied {
			if canI(t, cs, user, attrs) {
				t.Errorf("%s may %s %s in %s, want denied", user, attrs.Verb, attrs.Resource, attrs.Namespace)
			}
		}
	})

	t.Run("the webhook itself cannot use Leases or read Secrets", func(t *testing.T) {
		for _, attrs := range []authorizationv1.ResourceAttributes{
			{Namespace: "default", Group: "coordination.k8s.io", Resource: "leases", Verb: "update"},
			{Namespace: "default", Group: "", Resource: "secrets", Verb: "get"},
			{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "bind", Name: "cluster-admin"},
		} {
			if canI(t, cs, webhookUser, attrs) {
				t.Errorf("webhook may %s %s %s, want denied", attrs.Verb, attrs.Resource, attrs.Name)
			}
		}
	})

	t.Run("enforcing namespace injects replicas and refuses an opt-out", func(t *testing.T) {
		ns := newNamespace(t, cs, map[string]string{contract.LabelEnforce: "true"})
		replica := ownedByReplicaSet(plainPod("replica"), "api-5f7d8", "5f7d8")
		stored := createPod(t, cs, ns, "web", replica)
		if findContainer(stored.Spec.InitContainers, contract.ContainerName) == nil {
			t.Fatal("an unannotated Deployment replica in an enforcing namespace was not injected")
		}
		if got := stored.Annotations[contract.AnnotationLeaseName]; got != "api" {
			t.Errorf("lease name = %q, want the Deployment's name api", got)
		}
		optOut := ownedByReplicaSet(plainPod("opt-out"), "api-5f7d8", "5f7d8")
		optOut.Annotations = map[string]string{contract.AnnotationEnabled: "false"}
		_, err := cs.CoreV1().Pods(ns).Create(ctx, withSA(optOut, "web", t, cs, ns), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "namespace policy leader-election/enforce") {
			t.Fatalf("opt-out in an enforcing namespace: %v, want a refusal naming the policy", err)
		}
		bare := createPod(t, cs, ns, "web", plainPod("bare"))
		if findContainer(bare.Spec.InitContainers, contract.ContainerName) != nil {
			t.Error("a bare pod in an enforcing namespace was injected; the policy covers Deployments and StatefulSets")
		}
	})

	t.Run("security: the webhook's identity", func(t *testing.T) { testWebhookIdentity(t, env, webhookKubeconfig) })
	t.Run("security: a forged review for an excluded namespace", func(t *testing.T) { testForgedReview(t, env) })
	t.Run("security: a forged review for a served namespace grants nothing", func(t *testing.T) { testForgedReviewServed(t, env) })
	t.Run("security: foreign objects under the webhook's names", func(t *testing.T) { testForeignBindings(t, env) })
	t.Run("security: pod-bound elector tokens and Leases", func(t *testing.T) { testElectorLeases(t, env) })
	t.Run("security: handover and candidate Leases", func(t *testing.T) { testHandoverAndCandidates(t, env) })
	t.Run("security: the role and member labels", func(t *testing.T) { testPodLabels(t, env) })
	t.Run("security: a stray role label is removed", func(t *testing.T) { testStrayLabel(t, env) })
	t.Run("the label moves with a webhook replica killed", func(t *testing.T) { testLabelMovesWithAReplicaKilled(t, env) })

	t.Run("the leader label follows the Lease holder", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		a := createPod(t, cs, ns, "web", annotated("replica-a"))
		b := createPod(t, cs, ns, "web", annotated("replica-b"))
		for _, p := range []*corev1.Pod{a, b} {
			if p.Labels[contract.LabelMember] != "true" {
				t.Fatalf("pod %s lacks the member label: %v", p.Name, p.Labels)
			}
		}
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("replica-a")}}
		lease, err := cs.CoordinationV1().Leases(ns).Create(ctx, lease, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitForLeader(t, cs, ns, "replica-a")
		waitForDeletionCost(t, cs, ns, "replica-a")
		for _, holder := range []string{"replica-b", ""} {
			lease.Spec.HolderIdentity = ptr.To(holder)
			if lease, err = cs.CoordinationV1().Leases(ns).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitForLeader(t, cs, ns, holder)
			waitForDeletionCost(t, cs, ns, holder)
		}
	})

	t.Run("pod shapes", func(t *testing.T) { podShapes(t, cs) })

	// Last: stop the webhook.
	t.Run("with the webhook down annotated pods are refused and others created", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		if err := wh.proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := wh.proc.Wait(20 * time.Second); err != nil || code != 0 {
			t.Fatalf("webhook after SIGTERM: exit code %d, %v; want a clean exit", code, err)
		}
		_, err := cs.CoreV1().Pods(ns).Create(ctx, withSA(annotated("orphan"), "web", t, cs, ns), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), `failed calling webhook "opt-in.pods.leader-election.io"`) {
			t.Fatalf("annotated pod with the webhook down: %v, want a refusal naming the webhook", err)
		}
		createPod(t, cs, ns, "web", plainPod("unaffected"))
	})
}

// waitForLeader waits until exactly the holder (none for "") carries the leader label.
func waitForLeader(t *testing.T, cs kubernetes.Interface, ns, holder string) {
	t.Helper()
	var labelled []string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: contract.LabelRole + "=" + contract.RoleLeader})
		if err != nil {
			return false, err
		}
		labelled = labelled[:0]
		for _, p := range pods.Items {
			labelled = append(labelled, p.Name)
		}
		return (holder == "" && len(labelled) == 0) || (len(labelled) == 1 && labelled[0] == holder), nil
	})
	if err != nil {
		t.Fatalf("leader label on %v, want only on %q", labelled, holder)
	}
}

// waitForDeletionCost waits until exactly the holder (none for "") carries the controller's deletion cost, so
// that a ReplicaSet scaling down deletes it last.
func waitForDeletionCost(t *testing.T, cs kubernetes.Interface, ns, holder string) {
	t.Helper()
	var costs map[string]string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		costs = map[string]string{}
		for _, p := range pods.Items {
			if c, ok := p.Annotations[leaderlabel.DeletionCostAnnotation]; ok {
				costs[p.Name] = c + " managed=" + p.Annotations[leaderlabel.DeletionCostManagedAnnotation]
			}
		}
		want := leaderlabel.LeaderDeletionCost + " managed=true"
		return (holder == "" && len(costs) == 0) || (len(costs) == 1 && costs[holder] == want), nil
	})
	if err != nil {
		t.Fatalf("deletion costs %v, want only %q with %s", costs, holder, leaderlabel.LeaderDeletionCost)
	}
}

func startWebhook(t *testing.T, env *controlplane.Env) *webhookUnderTest {
	t.Helper()
	return startWebhookOn(t, env, env.WebhookInstallOptions.LocalServingPort)
}

// startWebhookOn starts a webhook process serving admission on port (the configuration calls the envtest port).
func startWebhookOn(t *testing.T, env *controlplane.Env, port int) *webhookUnderTest {
	t.Helper()
	bin := controlplane.Build(t, "./cmd/webhook")
	opts := env.WebhookInstallOptions
	metrics := fmt.Sprintf("127.0.0.1:%d", controlplane.FreePort(t))
	health := fmt.Sprintf("127.0.0.1:%d", controlplane.FreePort(t))
	proc := controlplane.StartProcess(t, "webhook", bin, nil,
		"--kubeconfig", env.Kubeconfig(t, webhookUser),
		"--cert-dir", opts.LocalServingCertDir,
		"--port", strconv.Itoa(port),
		"--excluded-namespaces", "kube-system,leader-election-system",
		"--metrics-bind-address", metrics,
		"--health-probe-bind-address", health,
	)
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("webhook not ready within 30s:\n%s", proc.Output())
	}
	return &webhookUnderTest{proc: proc, metricsAddr: metrics}
}

// requests is the webhook's own count of admission requests on the opt-in path.
func (w *webhookUnderTest) requests(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + w.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "controller_runtime_webhook_requests_total{") && strings.Contains(line, `webhook="/mutate-pod"`) {
			n, err := strconv.Atoi(line[strings.LastIndex(line, " ")+1:])
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			total += n
		}
	}
	return total
}

func readObject[T runtime.Object](t *testing.T, rel string) T {
	t.Helper()
	obj, err := cluster.ReadManifest[T](rel)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func newNamespace(t *testing.T, cs kubernetes.Interface, labels map[string]string) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "it-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// withSA makes sure the ServiceAccount exists (no controller-manager runs here to create "default") and sets it.
func withSA(pod *corev1.Pod, sa string, t *testing.T, cs kubernetes.Interface, ns string) *corev1.Pod {
	t.Helper()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pod.Spec.ServiceAccountName = sa
	return pod
}

func createPod(t *testing.T, cs kubernetes.Interface, ns, sa string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := cs.CoreV1().Pods(ns).Create(t.Context(), withSA(pod, sa, t, cs, ns), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", pod.Name, err)
	}
	return out
}

func plainPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1.0"}}},
	}
}

func annotated(name string) *corev1.Pod {
	pod := plainPod(name)
	pod.Annotations = map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "web"}
	return pod
}

func ownedByReplicaSet(pod *corev1.Pod, rs, hash string) *corev1.Pod {
	pod.Labels = map[string]string{"pod-template-hash": hash}
	pod.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: "00000000-0000-4000-8000-000000000001", Controller: ptr.To(true),
	}}
	return pod
}

// restricted makes the application container satisfy PodSecurity "restricted".
func restricted(pod *corev1.Pod) *corev1.Pod {
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	return pod
}

func findContainer(list []corev1.Container, name string) *corev1.Container {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func canI(t *testing.T, cs kubernetes.Interface, user string, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	var groups []string
	if strings.HasPrefix(user, "system:serviceaccount:") {
		ns := strings.Split(user, ":")[2]
		groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}
