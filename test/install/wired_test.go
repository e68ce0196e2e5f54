package install

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/controlplane"
)

// TestWiredAsTheChartWiresIt runs the real webhook binary with the chart's arguments, the certificate the chart
// generates and the chart's RBAC (the process authenticates as the chart's ServiceAccount, so it has exactly what
// the chart grants), registers the chart's MutatingWebhookConfiguration with each Service reference replaced by
// a URL on localhost (the chart adds localhost to the certificate through webhook.tls.extraDNSNames), and
// creates pods through the API server.
func TestWiredAsTheChartWiresIt(t *testing.T) {
	bin := controlplane.Build(t, "./cmd/webhook")
	for _, tc := range []struct {
		name string
		release
		electorImage string
		// electorEnv is the elector's configuration that the chart's elector.* values set.
		electorEnv map[string]string
	}{
		{
			name:         "defaults without cert-manager",
			release:      release{name: defaultRelease, namespace: defaultNamespace, values: "certManager: {enabled: false}\nwebhook: {tls: {extraDNSNames: [localhost]}}\n"},
			electorImage: "leader-election/elector:" + readChartMeta(t).AppVersion,
			electorEnv: map[string]string{
				contract.EnvLeaseDuration: "15s", contract.EnvRenewDeadline: "10s", contract.EnvRetryPeriod: "2s",
				contract.EnvPort: "8642", contract.EnvReadiness: "member",
			},
		},
		{
			name:         "non-default values",
			release:      release{name: "le", namespace: "platform", values: nondefaultValues(t)},
			electorImage: "example/leader-election-elector:1.2.3-rc.1",
			electorEnv: map[string]string{
				contract.EnvLeaseDuration: "20s", contract.EnvRenewDeadline: "12s", contract.EnvRetryPeriod: "3s",
				contract.EnvPort: "9642", contract.EnvReadiness: "leader",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, tc.release)
			env := controlplane.Start(t)
			cs := env.Clientset
			ctx := t.Context()
			ns := tc.namespace

			// The chart's RBAC, ServiceAccount and admission policies, in the release's namespace: the webhook must
			// do its job within what the policies allow its identity.
			createNamespace(t, cs, ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
			var rbac objects
			for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
				rbac = append(rbac, objs.ofKind(kind)...)
			}
			apply(t, env.Config, rbac)

			// The webhook as the Deployment runs it. In a pod, the ServiceAccount's token stands for --kubeconfig;
			// here it is given explicitly.
			deploy := as[appsv1.Deployment](t, objs.one(t, "Deployment", ""))
			c := deploy.Spec.Template.Spec.Containers[0]
			sa := deploy.Spec.Template.Spec.ServiceAccountName
			kubeconfig := env.Kubeconfig(t, "system:serviceaccount:"+ns+":"+sa, "system:serviceaccounts", "system:serviceaccounts:"+ns)
			certDir := t.TempDir()
			secret := as[corev1.Secret](t, objs.one(t, "Secret", deploy.Spec.Template.Spec.Volumes[0].Secret.SecretName))
			for _, f := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
				if err := os.WriteFile(filepath.Join(certDir, f), secret.Data[f], 0o600); err != nil {
					t.Fatal(err)
				}
			}
			port, health := controlplane.FreePort(t), controlplane.FreePort(t)
			args := override(t, c.Args, map[string]string{
				"port":                      strconv.Itoa(port),
				"cert-dir":                  certDir,
				"metrics-bind-address":      "0",
				"health-probe-bind-address": "127.0.0.1:" + strconv.Itoa(health),
				"kubeconfig":                kubeconfig,
			})
			proc := controlplane.StartProcess(t, "webhook", bin, nil, args...)
			waitReady(t, proc, fmt.Sprintf("http://127.0.0.1:%d/readyz", health))

			// The chart's webhook configuration, calling the process instead of the Service, with the chart's CA.
			mwc := as[admissionregistrationv1.MutatingWebhookConfiguration](t, objs.one(t, "MutatingWebhookConfiguration", ""))
			for i := range mwc.Webhooks {
				cc := &mwc.Webhooks[i].ClientConfig
				if len(cc.CABundle) == 0 {
					t.Fatalf("webhook %s has no caBundle", mwc.Webhooks[i].Name)
				}
				cc.URL = ptr.To(fmt.Sprintf("https://localhost:%d%s", port, *cc.Service.Path))
				cc.Service = nil
			}
			if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}

			// The sample workload: its ServiceAccount, Deployment and Service; then one of its replicas, as the
			// ReplicaSet controller would create it.
			apps := "apps"
			createNamespace(t, cs, apps, nil)
			samples := kustomizeBuild(t, "samples")
			for _, u := range samples {
				u.SetNamespace(apps)
			}
			apply(t, env.Config, samples)
			sample := as[appsv1.Deployment](t, samples.one(t, "Deployment", "sample"))
			pod := replicaOf(sample.Name, apps, sample.Spec.Template)
			stored := createEventually(t, ctx, cs, pod)
			checkInjected(t, stored, tc.electorImage, sample.Name, tc.electorEnv)

			// The documented name: leader-election-elector-<ServiceAccount>. The webhook binds once the pod is
			// stored, not from the review.
			var rb *rbacv1.RoleBinding
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				var err error
				rb, err = cs.RbacV1().RoleBindings(apps).Get(ctx, "leader-election-elector-"+sample.Spec.Template.Spec.ServiceAccountName, metav1.GetOptions{})
				return err == nil, nil
			})
			if err != nil {
				t.Fatalf("the elector's RoleBinding: not created within 10s of the pod")
			}
			electorRole := parseArgs(t, c.Args)["elector-cluster-role"]
			if rb.RoleRef.Kind != "ClusterRole" || rb.RoleRef.Name != electorRole ||
				!slices.Equal(rb.Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: sample.Spec.Template.Spec.ServiceAccountName, Namespace: apps}}) {
				t.Errorf("RoleBinding %s: roleRef %+v subjects %+v, want ClusterRole %s for ServiceAccount %s", rb.Name, rb.RoleRef, rb.Subjects, electorRole, sample.Spec.Template.Spec.ServiceAccountName)
			}

			// A namespace that enforces leader election: a Deployment's replica takes part without annotation.
			enforced := "enforced"
			createNamespace(t, cs, enforced, map[string]string{contract.LabelEnforce: "true"})
			createServiceAccount(t, cs, enforced, "default")
			tpl := corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "worker"}},
				// serviceAccountName as the ServiceAccount admission plugin sets it (envtest disables that plugin).
				Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "worker", Image: "example/worker:1.0"}}},
			}
			checkInjected(t, createEventually(t, ctx, cs, replicaOf("worker", enforced, tpl)), tc.electorImage, "worker", tc.electorEnv)

			// The label controller, under the chart's RBAC and policies, labels the holder of the sample's Lease.
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: sample.Name, Namespace: apps},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(stored.Name), LeaseDurationSeconds: ptr.To[int32](15)}}
			if _, err := cs.CoordinationV1().Leases(apps).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				p, err := cs.CoreV1().Pods(apps).Get(ctx, stored.Name, metav1.GetOptions{})
				return err == nil && p.Labels[contract.LabelRole] == contract.RoleLeader, nil
			})
			if err != nil {
				t.Errorf("the webhook did not label the Lease holder %s/%s within 30s under the chart's RBAC and policies:\n%s", apps, stored.Name, proc.Output())
			}
		})
	}
}

// override replaces the values of the chart's --name=value arguments. Only the flags that stand for what a pod
// provides (its ServiceAccount's credentials and namespace) may be added; any other override must replace an
// argument the chart passes, so a renamed flag fails here.
func override(tb testing.TB, args []string, with map[string]string) []string {
	tb.Helper()
	addable := []string{"kubeconfig"}
	out := make([]string, 0, len(args)+len(addable))
	used := map[string]bool{}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if v, ok := with[name]; ok {
			a, used[name] = "--"+name+"="+v, true
		}
		out = append(out, a)
	}
	for _, name := range slices.Sorted(maps.Keys(with)) {
		switch {
		case used[name]:
		case slices.Contains(addable, name):
			out = append(out, "--"+name+"="+with[name])
		default:
			tb.Fatalf("the chart does not pass --%s", name)
		}
	}
	return out
}

// replicaOf is a pod as a Deployment's ReplicaSet creates it: the template, a pod-template-hash label and the
// ReplicaSet as controlling owner (the API server does not check that the owner exists).
func replicaOf(deployment, namespace string, tpl corev1.PodTemplateSpec) *corev1.Pod {
	const hash = "5d8f7c9b6"
	labels := map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: hash}
	for k, v := range tpl.Labels {
		labels[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: deployment + "-" + hash + "-",
			Namespace:    namespace,
			Labels:       labels,
			Annotations:  tpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deployment + "-" + hash,
				UID: types.UID("8d1c5f3a-0000-4000-8000-000000000001"), Controller: ptr.To(true),
			}},
		},
		Spec: *tpl.Spec.DeepCopy(),
	}
}

// createEventually creates a pod, retrying for a few seconds while the API server has not yet picked up the new
// webhook configuration (it reloads configurations asynchronously); any other error fails at once.
func createEventually(tb testing.TB, ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) *corev1.Pod {
	tb.Helper()
	var stored *corev1.Pod
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		if p.Annotations[contract.AnnotationInjected] == "" {
			// Not (yet) seen by the webhook: remove it and try again.
			last = fmt.Errorf("stored without injection: %s", describe(p))
			_ = cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			return false, nil
		}
		stored = p
		return true, nil
	})
	if err != nil {
		tb.Fatalf("creating a pod in %s through the webhook: %v (last: %v)", pod.Namespace, err, last)
	}
	return stored
}

// checkInjected asserts the stored pod has the elector as the chart configured it: a native sidecar with the
// chart's image, the Lease named after the workload, and the chart's timings, port and traffic mode.
func checkInjected(tb testing.TB, p *corev1.Pod, image, lease string, want map[string]string) {
	tb.Helper()
	i := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == contract.ContainerName })
	if i < 0 {
		tb.Fatalf("no %s init container: %s", contract.ContainerName, describe(p))
	}
	e := p.Spec.InitContainers[i]
	if e.RestartPolicy == nil || *e.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		tb.Errorf("%s is not a native sidecar (restartPolicy %v)", e.Name, e.RestartPolicy)
	}
	if e.Image != image {
		tb.Errorf("%s image %q, want %q (the chart's elector image)", e.Name, e.Image, image)
	}
	env := map[string]string{}
	for _, v := range e.Env {
		env[v.Name] = v.Value
	}
	want = maps.Clone(want)
	want[contract.EnvLeaseName] = lease
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if env[k] != want[k] {
			tb.Errorf("%s: %s=%q, want %q", describe(p), k, env[k], want[k])
		}
	}
}

// waitReady waits for the webhook's /readyz, failing at once if the process exits.
func waitReady(tb testing.TB, proc *controlplane.Process, url string) {
	tb.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if code, err := proc.Wait(0); err == nil {
			tb.Fatalf("the webhook exited with code %d before it was ready:\n%s", code, proc.Output())
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("the webhook was not ready at %s within 60s:\n%s", url, proc.Output())
}
