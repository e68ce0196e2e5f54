package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/controlplane"
)

// TestReadinessWaitsForAdmissionCaches: admission reads ServiceAccounts and RoleBindings from the webhook's
// cache, so the webhook must not report ready before those caches have synced. The webhook starts with every
// permission of the shipped role except reading ServiceAccounts, so that cache cannot sync: it must stay unready
// (a cache started only by the first admission request would leave it ready). Once the permission is granted it
// becomes ready, and the first annotated pod is injected and bound.
func TestReadinessWaitsForAdmissionCaches(t *testing.T) {
	env := startWithShippedWebhook(t)
	cs, ctx := env.Clientset, t.Context()
	const user = "coldstart-webhook"

	full := readObject[*rbacv1.ClusterRole](t, "config/rbac/webhook_role.yaml")
	partial := full.DeepCopy()
	partial.Name = full.Name + "-without-serviceaccounts"
	partial.Rules = slices.DeleteFunc(partial.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "serviceaccounts") })
	if len(partial.Rules) != len(full.Rules)-1 {
		t.Fatalf("the shipped webhook role has no single serviceaccounts rule: %+v", full.Rules)
	}
	for _, role := range []*rbacv1.ClusterRole{readObject[*rbacv1.ClusterRole](t, "config/rbac/elector_role.yaml"), full, partial} {
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind := func(role string) {
		t.Helper()
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role + "-" + user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	bind(partial.Name)

	opts := env.WebhookInstallOptions
	health := fmt.Sprintf("127.0.0.1:%d", controlplane.FreePort(t))
	proc := controlplane.StartProcess(t, "webhook", controlplane.Build(t, "./cmd/webhook"), nil,
		"--kubeconfig", env.Kubeconfig(t, user),
		"--cert-dir", opts.LocalServingCertDir,
		"--port", strconv.Itoa(opts.LocalServingPort),
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", health,
	)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + health + "/readyz?verbose")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// Wait for the health server, then watch readiness for a while: the pod and Lease caches sync within a
	// second here, so a webhook that does not wait for the ServiceAccount cache reports ready in that time.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		code, _ := readyz()
		return code != 0, nil
	}); err != nil {
		t.Fatalf("the health server never answered:\n%s", proc.Output())
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if code, body := readyz(); code == http.StatusOK {
			t.Fatalf("ready although the ServiceAccount cache cannot sync (no permission to list ServiceAccounts):\n%s", body)
		}
	}

	bind(full.Name)
	var last string
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		code, body := readyz()
		last = body
		return code == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("not ready after the permission was granted; /readyz says:\n%s\nwebhook output:\n%s", last, proc.Output())
	}

	ns := newNamespace(t, cs, nil)
	pod := createPod(t, cs, ns, "web", annotated("web"))
	if findContainer(pod.Spec.InitContainers, contract.ContainerName) == nil {
		t.Errorf("the first annotated pod after start was not injected: %+v", pod.Spec.InitContainers)
	}
	// The webhook binds once the pod is stored (never from the review itself): wait for it.
	waitCanHold(t, cs, ns, "web", "web")
	if _, err := cs.RbacV1().RoleBindings(ns).Get(ctx, binding.Name("web"), metav1.GetOptions{}); err != nil {
		t.Errorf("the first annotated pod's ServiceAccount was not bound: %v", err)
	}
}
