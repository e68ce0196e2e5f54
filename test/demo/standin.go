package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/test/cluster"
)

const (
	namespace = "demo"
	app       = "sample" // the name config/samples uses for its Deployment, Service and ServiceAccount
)

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// runStandIn is the demo on test/cluster's stand-in node, for machines that cannot run a real one: the electors
// run as processes, the app containers are not run, and no Service traffic flows.
func runStandIn(ctx context.Context, bin string, keep bool) error {
	workDir, err := os.MkdirTemp("", "leader-election-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(workDir)
	}
	start := time.Now()
	say("== 1. a local cluster: etcd, kube-apiserver and kube-controller-manager built from source, the webhook, a node stand-in")
	c, err := cluster.Start(ctx, cluster.Options{BinDir: bin, WorkDir: workDir, Logf: func(f string, a ...any) { say("   "+f, a...) }})
	if err != nil {
		return err
	}
	defer func() {
		say("== cleaning up: stopping the electors, the webhook and the control plane")
		c.Stop()
	}()
	cs := c.Clientset
	version, _ := cs.Discovery().ServerVersion()
	say("   cluster up in %s (kube-apiserver %s)", time.Since(start).Round(100*time.Millisecond), version.GitVersion)

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	endpoints, err := cluster.WatchEndpoints(ctx, cs, namespace)
	if err != nil {
		return err
	}
	defer endpoints.Stop()

	say("== 2. applying config/samples to namespace %s: ServiceAccount, Deployment (3 replicas, annotated leader-election/enabled: \"true\"), Service selecting leader-election/role: leader", namespace)
	if err := applySamples(ctx, c); err != nil {
		return err
	}

	leader, err := waitForLeader(ctx, cs, endpoints, "")
	if err != nil {
		return err
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
	if err != nil {
		return err
	}
	say("== 3. what the webhook injected into pod %s", pods.Items[0].Name)
	describeInjection(ctx, cs, &pods.Items[0])

	say("== 4. one leader, and the Service's only ready endpoint is the leader")
	say("   Lease %s/%s is held by %s", namespace, app, leader)
	say("   Service %s ready endpoints: %v", app, endpoints.Ready(app))
	say("   each elector answers GET / (leaseTransitions is the fencing token the application attaches to its writes):")
	for _, p := range pods.Items {
		say("   %-28s %s", p.Name, electorState(c, &p))
	}

	say("== 5. deleting the leader pod %s", leader)
	deleted := time.Now()
	if err := cs.CoreV1().Pods(namespace).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
		return err
	}
	ready, at, err := endpoints.WaitReady(ctx, app, 60*time.Second, func(r []string) bool { return len(r) == 1 && r[0] != leader })
	if err != nil {
		return err
	}
	say("   new leader %s; the Service's endpoint moved %s after the delete", ready[0], at.Sub(deleted).Round(time.Millisecond))

	say("== 6. rolling out a new pod template (default RollingUpdate strategy)")
	rolled := time.Now()
	if err := rollOut(ctx, cs); err != nil {
		return err
	}
	if err := waitRolledOut(ctx, cs); err != nil {
		return err
	}
	leader, err = waitForLeader(ctx, cs, endpoints, "")
	if err != nil {
		return err
	}
	say("   rollout complete in %s: 3/3 replicas updated and available, Available=True; leader now %s", time.Since(rolled).Round(100*time.Millisecond), leader)

	events, violations := endpoints.Summary()
	say("   throughout: %d EndpointSlice changes watched, %d moments with two ready endpoints", events, len(violations))
	if len(violations) > 0 {
		return fmt.Errorf("two ready endpoints for one Service:\n%s", strings.Join(violations, "\n"))
	}
	if keep {
		say("== the cluster stays up; in another terminal:")
		say("   export KUBECONFIG=%s", c.AdminKubeconfig)
		say("   kubectl -n %s get pods -L %s,%s", namespace, contract.LabelRole, contract.LabelMember)
		say("   press Ctrl-C to stop it (logs and kubeconfig stay in %s)", workDir)
		<-ctx.Done()
	}
	return nil
}

// applySamples creates the objects of config/samples in the demo namespace, as `kubectl apply -k` would.
func applySamples(ctx context.Context, c *cluster.Cluster) error {
	cl, err := client.New(c.Env.Config, client.Options{})
	if err != nil {
		return err
	}
	for _, file := range []string{"serviceaccount.yaml", "deployment.yaml", "service.yaml"} {
		obj, err := cluster.ReadManifest[runtime.Object]("config/samples/" + file)
		if err != nil {
			return err
		}
		o := obj.(client.Object)
		o.SetNamespace(namespace)
		if err := cl.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", file, err)
		}
	}
	return nil
}

// waitForLeader waits for the Lease to have a holder other than not, whose pod is the Service's only ready
// endpoint, and returns it.
func waitForLeader(ctx context.Context, cs kubernetes.Interface, endpoints *cluster.Endpoints, not string) (string, error) {
	var holder string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		lease, err := cs.CoordinationV1().Leases(namespace).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		holder = ptr.Deref(lease.Spec.HolderIdentity, "")
		return holder != "" && holder != not && slices.Equal(endpoints.Ready(app), []string{holder}), nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for a leader serving alone: %w (holder %q, ready endpoints %v)", err, holder, endpoints.Ready(app))
	}
	return holder, nil
}

func describeInjection(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) {
	for _, c := range pod.Spec.InitContainers {
		if c.Name != contract.ContainerName {
			continue
		}
		say("   native sidecar %s (image %s, restartPolicy %s)", c.Name, c.Image, ptr.Deref(c.RestartPolicy, ""))
		var env []string
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				env = append(env, e.Name+"=<"+e.ValueFrom.FieldRef.FieldPath+">")
			} else {
				env = append(env, e.Name+"="+e.Value)
			}
		}
		say("   env: %s", strings.Join(env, " "))
		say("   readinessProbe GET %s :%s every %ds; livenessProbe GET %s", c.ReadinessProbe.HTTPGet.Path,
			c.ReadinessProbe.HTTPGet.Port.String(), c.ReadinessProbe.PeriodSeconds, c.LivenessProbe.HTTPGet.Path)
		say("   securityContext: runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, all capabilities dropped")
	}
	say("   annotation %s=%s", contract.AnnotationInjected, pod.Annotations[contract.AnnotationInjected])
	sa := pod.Spec.ServiceAccountName
	if rb, err := cs.RbacV1().RoleBindings(namespace).Get(ctx, binding.Name(sa), metav1.GetOptions{}); err == nil {
		say("   RoleBinding %s binds ServiceAccount %s to ClusterRole %s in namespace %s only", rb.Name, sa, rb.RoleRef.Name, namespace)
	}
}

// electorState asks a pod's elector for its view of the election (GET /, the leader-elector compatible answer).
func electorState(c *cluster.Cluster, pod *corev1.Pod) string {
	ip := c.Kubelet.LoopbackIP(pod.UID)
	if ip == "" {
		return "(not running)"
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://%s:%d/", ip, inject.DefaultPort))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var state map[string]any
	if json.Unmarshal(body, &state) != nil {
		return strings.TrimSpace(string(body))
	}
	return fmt.Sprintf("name=%v isLeader=%v leaseTransitions=%v validUntil=%v", state["name"], state["isLeader"], state["leaseTransitions"], state["validUntil"])
}

func rollOut(ctx context.Context, cs kubernetes.Interface) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(namespace).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if d.Spec.Template.Annotations == nil {
			d.Spec.Template.Annotations = map[string]string{}
		}
		d.Spec.Template.Annotations["demo/rolled-at"] = time.Now().Format(time.RFC3339)
		_, err = cs.AppsV1().Deployments(namespace).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, nil
	})
}

// waitRolledOut waits for what `kubectl rollout status` waits for, and Available=True.
func waitRolledOut(ctx context.Context, cs kubernetes.Interface) error {
	var last appsv1.DeploymentStatus
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(namespace).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = d.Status
		return cluster.RolledOut(d, ptr.Deref(d.Spec.Replicas, 1)), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the rollout: %w (last status %+v)", err, last)
	}
	return nil
}
