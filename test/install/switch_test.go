package install

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/admissionpolicy"
	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/controlplane"
)

// The variables that make the test binary Helm's post-renderer (TestMain): the webhook's URL on localhost, and
// the directory of the serving certificate the test's webhook process uses.
const (
	envPostRenderURL  = "LEADER_ELECTION_TEST_WEBHOOK_URL"
	envPostRenderCert = "LEADER_ELECTION_TEST_CERT_DIR"
)

// postRender is Helm's post-renderer for the switch test: the API server here cannot reach a Service (no node, no
// kube-proxy), so each webhook of the MutatingWebhookConfiguration calls url+path instead, and the chart's
// serving certificate, new on every render, is replaced by one pair the test's webhook process serves in every
// revision. Everything else is passed on as rendered.
func postRender(in io.Reader, out io.Writer, url, certDir string) error {
	pem := map[string]string{}
	for _, f := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(certDir, f))
		if err != nil {
			return err
		}
		pem[f] = base64.StdEncoding.EncodeToString(b)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		switch {
		case u.GetKind() == "MutatingWebhookConfiguration":
			hooks, _, _ := unstructured.NestedSlice(m, "webhooks")
			for _, h := range hooks {
				cc := h.(map[string]any)["clientConfig"].(map[string]any)
				path, _, _ := unstructured.NestedString(cc, "service", "path")
				delete(cc, "service")
				cc["url"], cc["caBundle"] = url+path, pem["ca.crt"]
			}
			if err := unstructured.SetNestedSlice(m, hooks, "webhooks"); err != nil {
				return err
			}
		case u.GetKind() == "Secret" && m["type"] == string(corev1.SecretTypeTLS):
			if err := unstructured.SetNestedStringMap(m, pem, "data"); err != nil {
				return err
			}
		}
		b, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(out, "---\n%s", b); err != nil {
			return err
		}
	}
}

// holdFinalizer keeps an object Helm deletes in place until the test lets it go.
const holdFinalizer = "test.leader-election.io/hold"

// TestSwitchAdmissionMode installs the chart with helm in one admission mode on the real API server, runs the
// chart's manager as its Deployment would, and switches admission.mode with `helm upgrade` while pods are created
// all along: a Deployment's replicas (as its ReplicaSet creates them from a template that neither mode changes)
// and bare pods. Every pod must be admitted, with exactly one elector, and its ServiceAccount bound for its Lease.
//
// Helm creates the new mode's objects, then deletes the old mode's, each in a moment; on a real cluster each API
// server sees them later, and the old manager's pods outlive the upgrade. The test widens every state the switch
// passes through: a finalizer holds each object Helm deletes, and the test releases them in the order Helm deleted
// them (its previous release's manifest), creating pods after each; both managers run until the old mode's objects
// are gone, then the old one stops and pods are created with the new mode alone.
func TestSwitchAdmissionMode(t *testing.T) {
	bin := controlplane.Build(t, "./cmd/webhook")
	for _, tc := range []struct{ from, to string }{{"webhook", "policy"}, {"policy", "webhook"}} {
		t.Run(tc.from+" to "+tc.to, func(t *testing.T) { testSwitch(t, bin, tc.from, tc.to) })
	}
}

func testSwitch(t *testing.T, bin, from, to string) {
	const ns, apps, enforced = defaultNamespace, "apps", "enforced"
	values := func(mode string) string {
		return "admission: {mode: " + mode + "}\ncertManager: {enabled: false}\nwebhook: {tls: {extraDNSNames: [localhost]}}\n"
	}
	render := func(mode string) objects {
		return helmTemplate(t, release{name: defaultRelease, namespace: ns, values: values(mode)})
	}

	// One serving pair for every revision: the chart's own, from one render.
	certDir := t.TempDir()
	var tlsSecret *corev1.Secret
	for _, u := range render("webhook").ofKind("Secret") {
		if s := as[corev1.Secret](t, u); s.Type == corev1.SecretTypeTLS {
			tlsSecret = s
		}
	}
	if tlsSecret == nil {
		t.Fatal("the chart in webhook mode renders no TLS Secret")
	}
	for f, b := range tlsSecret.Data {
		if err := os.WriteFile(filepath.Join(certDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := controlplane.FreePort(t)

	env := controlplane.Start(t)
	cs := env.Clientset
	ctx := t.Context()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helmHome := t.TempDir()
	admin := env.Kubeconfig(t, "switch-admin", "system:masters")
	helm := func(mode string) {
		t.Helper()
		cmd := exec.Command(tool(t, "helm"), "upgrade", "--install", defaultRelease, chartDir, "--namespace", ns, "--create-namespace",
			"--values", writeFile(t, "values.yaml", values(mode)), "--post-renderer", self, "--kubeconfig", admin)
		cmd.Env = append(os.Environ(), envPostRenderURL+"=https://localhost:"+strconv.Itoa(port), envPostRenderCert+"="+certDir,
			"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"), "HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
			"HELM_DATA_HOME="+filepath.Join(helmHome, "data"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm upgrade --install with admission.mode=%s: %v\n%s", mode, err, out)
		}
	}

	// The manager as the chart's Deployment runs it, authenticated as the chart's ServiceAccount.
	var kubeconfig string
	startManager := func(mode string) (proc *controlplane.Process, ready func()) {
		t.Helper()
		deploy := as[appsv1.Deployment](t, render(mode).one(t, "Deployment", ""))
		c := deploy.Spec.Template.Spec.Containers[0]
		if kubeconfig == "" {
			sa := deploy.Spec.Template.Spec.ServiceAccountName
			kubeconfig = env.Kubeconfig(t, "system:serviceaccount:"+ns+":"+sa, "system:serviceaccounts", "system:serviceaccounts:"+ns)
		}
		health := controlplane.FreePort(t)
		with := map[string]string{
			"metrics-bind-address":      "0",
			"health-probe-bind-address": "127.0.0.1:" + strconv.Itoa(health),
			"kubeconfig":                kubeconfig,
		}
		if mode == "webhook" {
			with["port"], with["cert-dir"] = strconv.Itoa(port), certDir
		}
		proc = controlplane.StartProcess(t, "manager in admission mode "+mode, bin, nil, override(t, c.Args, with)...)
		return proc, func() { waitReady(t, proc, fmt.Sprintf("http://127.0.0.1:%d/readyz", health)) }
	}

	helm(from)
	createNamespace(t, cs, apps, nil)
	createServiceAccount(t, cs, apps, "default")
	oldManager, oldReady := startManager(from)
	oldReady()
	waitForMode(t, cs, apps, from)

	// Pods are created all along, by phase; each phase has its own ServiceAccount, Lease names and Deployments, so
	// that each phase's bindings are checked on their own. The Deployment in the enforcing namespace has no
	// annotation: the namespace enrols its replicas.
	createNamespace(t, cs, enforced, map[string]string{contract.LabelEnforce: "true"})
	phases := []string{"before", "upgrade", "overlap", "deleting", "after"}
	for _, p := range phases {
		for _, namespace := range []string{apps, enforced} {
			createServiceAccount(t, cs, namespace, p)
			deploy := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web-" + p, Namespace: namespace},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web-" + p}},
					Template: webTemplate(p, namespace == apps),
				},
			}
			if _, err := cs.AppsV1().Deployments(namespace).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var phase atomic.Value
	phase.Store(phases[0])
	creator := startCreating(ctx, cs, apps, enforced, &phase)

	// Two of each kind of pod before the upgrade (the copy check below needs two bare pods); a fixed time is not
	// enough when the API server is slow to answer each creation.
	time.Sleep(time.Second)
	creator.waitAttempts(t, "before", 6)
	// The new manager starts with the upgrade (its pod rolls out beside the old one's). Going to webhook mode it is
	// ready before the MutatingWebhookConfiguration exists: the API server calls the webhook from that moment on,
	// and refuses annotated pods while no replica answers, which on a real cluster lasts until the new pods are
	// ready (docs/policy-mode.md). Going to policy mode it becomes ready once the upgrade has granted it what
	// binding from workloads reads (Deployments, StatefulSets, Namespaces).
	phase.Store("upgrade")
	_, newReady := startManager(to)
	if to == "webhook" {
		newReady()
	}
	held := holdOldObjects(t, env, render(from), render(to))
	helm(to)
	newReady()

	phase.Store("overlap")
	time.Sleep(2 * time.Second)
	creator.waitAttempts(t, "overlap", 3)
	// The old label controller and the new one at once: the Lease holder alone is labelled leader, and the label
	// follows the Lease to another holder.
	checkLabelControllers(t, cs, apps, creator)

	phase.Store("deleting")
	releaseInHelmOrder(t, held, admin)
	if err := oldManager.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := oldManager.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	phase.Store("after")
	time.Sleep(2 * time.Second)
	creator.waitAttempts(t, "after", 3)
	attempts := creator.stop()

	// Every pod admitted, with one elector; from the "after" phase on, injected by the new mode.
	version := readChartMeta(t).AppVersion + "/"
	perPhase := map[string]int{}
	for _, a := range attempts {
		perPhase[a.phase]++
		if a.err != nil {
			t.Errorf("phase %s: %s refused: %v", a.phase, a.name, a.err)
			continue
		}
		p := a.pod
		electors := 0
		for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for _, c := range list {
				if c.Name == contract.ContainerName {
					electors++
				}
			}
		}
		injected := p.Annotations[contract.AnnotationInjected]
		if electors != 1 || !strings.HasPrefix(injected, version) || p.Labels[contract.LabelMember] != "true" {
			t.Errorf("phase %s: %s has %d electors, %s=%q, labels %v; want one elector, injected by this version", a.phase, p.Name, electors, contract.AnnotationInjected, injected, p.Labels)
		}
		if a.phase == "after" && (to == "policy") != strings.HasSuffix(injected, "/"+admissionpolicy.InjectedSuffix) {
			t.Errorf("phase after: %s has %s=%q: not injected by admission mode %s", p.Name, contract.AnnotationInjected, injected, to)
		}
	}
	t.Logf("pods created by phase: %v", perPhase)
	for _, p := range phases {
		if perPhase[p] == 0 {
			t.Errorf("no pod was created in phase %s", p)
		}
	}

	// A pod the old mode injected, created again (kubectl get -o yaml | kubectl create -f -) in the new mode alone:
	// one of each namespace.
	copied := map[string]bool{}
	for _, a := range attempts {
		if a.phase != "before" || a.err != nil || copied[a.pod.Namespace] {
			continue
		}
		copied[a.pod.Namespace] = true
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: a.pod.Name + "-again", Labels: a.pod.Labels, Annotations: a.pod.Annotations, OwnerReferences: a.pod.OwnerReferences}, Spec: a.pod.Spec}
		stored, err := cs.CoreV1().Pods(a.pod.Namespace).Create(ctx, again, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("a copy of %s, injected in admission mode %s, refused in mode %s: %v", a.pod.Name, from, to, err)
		} else if !equality.Semantic.DeepEqual(stored.Spec, a.pod.Spec) || stored.Annotations[contract.AnnotationInjected] != a.pod.Annotations[contract.AnnotationInjected] {
			t.Errorf("a copy of %s, injected in admission mode %s, was changed in mode %s: %s", a.pod.Name, from, to, describe(stored))
		}
	}

	// Each phase's ServiceAccount may hold its Leases: the binding controllers of both managers bound it.
	for _, p := range phases {
		checkMayHold(t, cs, apps, p, "bare-"+p)
		checkMayHold(t, cs, apps, p, "web-"+p)
		checkMayHold(t, cs, enforced, p, "web-"+p)
	}
}

// waitForMode waits until an annotated pod is injected by the given admission mode.
func waitForMode(t *testing.T, cs kubernetes.Interface, namespace, mode string) {
	t.Helper()
	probe := plainPod("probe", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "probe"})
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = describe(p)
		byPolicy := strings.HasSuffix(p.Annotations[contract.AnnotationInjected], "/"+admissionpolicy.InjectedSuffix)
		return hasElector(p) && byPolicy == (mode == "policy"), nil
	})
	if err != nil {
		t.Fatalf("admission mode %s did not inject an annotated pod within 30s (last: %s)", mode, last)
	}
}

// attempt is one pod creation: the stored pod, or the refusal.
type attempt struct {
	phase, name string
	pod         *corev1.Pod
	err         error
}

// creator creates pods every 50 ms until stopped, in turn an opted-in Deployment's replica, an opted-in bare pod
// and an enforcing namespace's replica, each named after the phase it was created in.
type creator struct {
	mu       sync.Mutex
	attempts []attempt
	done     chan struct{}
	stopped  chan struct{}
}

func startCreating(ctx context.Context, cs kubernetes.Interface, namespace, enforced string, phase *atomic.Value) *creator {
	c := &creator{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(c.stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-c.done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p := phase.Load().(string)
			var pod *corev1.Pod
			switch i % 3 {
			case 0:
				pod = replicaOf("web-"+p, namespace, webTemplate(p, true))
			case 1:
				pod = plainPod(fmt.Sprintf("bare-%s-%d", p, i), map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "bare-" + p})
				pod.Namespace, pod.Spec.ServiceAccountName = namespace, p
			case 2:
				pod = replicaOf("web-"+p, enforced, webTemplate(p, false))
			}
			stored, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
			name := pod.Namespace + "/" + pod.Name + pod.GenerateName
			if err == nil {
				name = pod.Namespace + "/" + stored.Name
			}
			c.mu.Lock()
			c.attempts = append(c.attempts, attempt{phase: p, name: name, pod: stored, err: err})
			c.mu.Unlock()
		}
	}()
	return c
}

// webTemplate is the pod template of phase p's Deployment: opted in by annotation, or not (an enforcing
// namespace enrols it). Neither admission mode changes it; only its pods are injected.
func webTemplate(p string, optIn bool) corev1.PodTemplateSpec {
	tpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web-" + p}},
		Spec:       corev1.PodSpec{ServiceAccountName: p, Containers: []corev1.Container{{Name: "app", Image: "example/app:1.0"}}},
	}
	if optIn {
		tpl.Annotations = map[string]string{contract.AnnotationEnabled: "true"}
	}
	return tpl
}

// admitted returns the pods admitted so far in a phase.
func (c *creator) admitted(phase string) []*corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*corev1.Pod
	for _, a := range c.attempts {
		if a.phase == phase && a.err == nil {
			out = append(out, a.pod)
		}
	}
	return out
}

// waitAttempts waits until at least n pods were created (or refused) in phase: one of each kind every three.
func (c *creator) waitAttempts(t *testing.T, phase string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c.mu.Lock()
		have := 0
		for _, a := range c.attempts {
			if a.phase == phase {
				have++
			}
		}
		c.mu.Unlock()
		if have >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d pod creations in phase %s after a minute, want %d", have, phase, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *creator) stop() []attempt {
	close(c.done)
	<-c.stopped
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.attempts)
}

// heldObject is an object of the old mode that Helm deletes, held by holdFinalizer.
type heldObject struct {
	u  *unstructured.Unstructured
	ri dynamic.ResourceInterface
}

// holdOldObjects adds holdFinalizer to every object the old mode renders and the new one does not: the objects
// `helm upgrade` deletes.
func holdOldObjects(t *testing.T, env *controlplane.Env, old, next objects) []heldObject {
	t.Helper()
	resource := resources(t, env.Config)
	kept := map[string]bool{}
	for _, u := range next {
		kept[key(u)] = true
	}
	var held []heldObject
	// Registered before the first hold: a failure part of the way through still lets go of every object held.
	t.Cleanup(func() {
		for _, h := range held {
			_, _ = h.ri.Patch(context.Background(), h.u.GetName(), types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
		}
	})
	for _, u := range old {
		if kept[key(u)] {
			continue
		}
		ri := resource(u)
		patch := fmt.Sprintf(`{"metadata":{"finalizers":[%q]}}`, holdFinalizer)
		held = append(held, heldObject{u: u, ri: ri})
		if _, err := ri.Patch(t.Context(), u.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("holding %s: %v", key(u), err)
		}
	}
	if len(held) == 0 {
		t.Fatal("the old mode renders nothing the new one does not")
	}
	return held
}

// releaseInHelmOrder lets the held objects go, kind by kind, in the order Helm deleted them (the order of the
// previous revision's manifest), waiting a second after each kind while pods are created.
func releaseInHelmOrder(t *testing.T, held []heldObject, admin string) {
	t.Helper()
	out, err := run(t, "helm", "get", "manifest", defaultRelease, "--namespace", defaultNamespace, "--revision", "1", "--kubeconfig", admin)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, u := range decode(t, out) {
		order = append(order, key(u))
	}
	slices.SortStableFunc(held, func(a, b heldObject) int {
		return slices.Index(order, key(a.u)) - slices.Index(order, key(b.u))
	})
	for i, h := range held {
		if slices.Index(order, key(h.u)) < 0 {
			t.Fatalf("%s is not in the first revision's manifest", key(h.u))
		}
		stored, err := h.ri.Get(t.Context(), h.u.GetName(), metav1.GetOptions{})
		if err != nil || stored.GetDeletionTimestamp() == nil {
			t.Fatalf("%s: helm upgrade did not delete it (err %v)", key(h.u), err)
		}
		if _, err := h.ri.Patch(t.Context(), h.u.GetName(), types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("releasing %s: %v", key(h.u), err)
		}
		switch {
		case i == len(held)-1:
			// The last one: the API server's admission informers have seen every deletion before the old
			// manager stops, as the rollout stops the old pods only after the upgrade.
			time.Sleep(2 * time.Second)
		case held[i+1].u.GetKind() != h.u.GetKind():
			time.Sleep(time.Second)
		}
	}
}

// checkLabelControllers: with both managers' label controllers running, the holder of a Lease alone carries the
// leader label, and the label follows the Lease to another holder.
func checkLabelControllers(t *testing.T, cs kubernetes.Interface, namespace string, c *creator) {
	t.Helper()
	ctx := t.Context()
	var group []*corev1.Pod
	for _, p := range c.admitted("before") {
		if p.Annotations[contract.AnnotationLeaseName] == "bare-before" {
			group = append(group, p)
		}
	}
	if len(group) < 2 {
		t.Fatalf("want two bare pods of phase before, have %d", len(group))
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "bare-before", Namespace: namespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(group[0].Name), LeaseDurationSeconds: ptr.To[int32](15)}}
	if _, err := cs.CoordinationV1().Leases(namespace).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, cs, namespace, group, group[0].Name)
	stored, err := cs.CoordinationV1().Leases(namespace).Get(ctx, lease.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored.Spec.HolderIdentity = ptr.To(group[1].Name)
	if _, err := cs.CoordinationV1().Leases(namespace).Update(ctx, stored, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, cs, namespace, group, group[1].Name)
}

// waitLeader waits until, of the group, the holder alone carries the leader label.
func waitLeader(t *testing.T, cs kubernetes.Interface, namespace string, group []*corev1.Pod, holder string) {
	t.Helper()
	var labelled []string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		labelled = nil
		for _, p := range group {
			got, err := cs.CoreV1().Pods(namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if got.Labels[contract.LabelRole] == contract.RoleLeader {
				labelled = append(labelled, p.Name)
			}
		}
		return slices.Equal(labelled, []string{holder}), nil
	})
	if err != nil {
		t.Fatalf("with both managers running, the leader label is on %v, want on the Lease holder %s alone", labelled, holder)
	}
}

// checkMayHold waits until the ServiceAccount may write the Lease: RBAC's update on Leases, through the elector's
// RoleBinding, and the synthetic hold on the Lease's name that the Lease policy asks for.
func checkMayHold(t *testing.T, cs kubernetes.Interface, namespace, serviceAccount, lease string) {
	t.Helper()
	user := "system:serviceaccount:" + namespace + ":" + serviceAccount
	allowed := func(ctx context.Context, attrs authorizationv1.ResourceAttributes) (bool, error) {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
			ResourceAttributes: &attrs,
		}}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return sar.Status.Allowed, nil
	}
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		update, err := allowed(ctx, authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: lease})
		if err != nil || !update {
			return false, err
		}
		return allowed(ctx, authorizationv1.ResourceAttributes{Namespace: namespace, Verb: binding.HoldVerb, Group: binding.HoldGroup, Resource: binding.HoldResource, Name: lease})
	})
	if err != nil {
		t.Errorf("ServiceAccount %s/%s may not hold Lease %s within 30s: its pods' electors would be refused", namespace, serviceAccount, lease)
	}
}
