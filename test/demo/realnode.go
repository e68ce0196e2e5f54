package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/controlplane"
	"github.com/leader-election/leader-election/test/node"
)

// runRealNode is the demo on a real node, with Service traffic through kube-proxy.
func runRealNode(ctx context.Context, imagesDir string, keep bool) error {
	root := controlplane.RepoRoot()
	cp, err := controlplane.Assets()
	if err != nil {
		return err
	}
	nodeBin, err := node.Binaries(root)
	if err != nil {
		return err
	}
	var images []string
	for _, name := range []string{"webhook", "elector"} {
		images = append(images, filepath.Join(imagesDir, name+".tar"))
	}
	start := time.Now()
	say("== 1. a real node: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy built from")
	say("   source; containerd with runc; a CNI bridge; every address in 198.18.0.0/15, which stays on this machine")
	n, err := node.Start(ctx, node.Options{ControlPlane: cp, NodeBinaries: nodeBin, RepoRoot: root, Images: images, Keep: keep,
		Logf: func(f string, a ...any) {
			if strings.HasPrefix(f, "node: ") {
				say("   "+strings.TrimPrefix(f, "node: "), a...)
			}
		}})
	if err != nil {
		return err
	}
	defer func() {
		say("== cleaning up: pods, processes, mounts, cgroups, firewall rules, the bridge and sysctls put back")
		if err := n.Stop(); err != nil {
			say("   %v", err)
		}
		if diff := n.Before().Diff(node.TakeSnapshot()); len(diff) > 0 {
			say("   the machine differs from before:\n   %s", strings.Join(diff, "\n   "))
		} else {
			say("   machine as before: no bridge, no KUBE-* chains, sysctls restored, no process left")
		}
	}()
	cs := n.Clientset
	version, _ := cs.Discovery().ServerVersion()
	say("   node %s Ready, cluster up in %s (Kubernetes %s)", node.NodeName, time.Since(start).Round(100*time.Millisecond), version.GitVersion)

	say("== 2. helm install leader-election charts/leader-election --set certManager.enabled=false (images from make images)")
	installed := time.Now()
	if err := n.InstallChart(ctx); err != nil {
		return err
	}
	say("   webhook Deployment ready in %s, with the certificate the chart generated", time.Since(installed).Round(100*time.Millisecond))

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	say("== 3. applying config/samples to namespace %s (the app image swapped for a small local app that answers with", namespace)
	say("   its pod name and whether its elector leads): ServiceAccount, Deployment of 3 annotated replicas, Service")
	svc, err := applySamplesOnNode(ctx, cs)
	if err != nil {
		return err
	}
	url := "http://" + svc.Spec.ClusterIP + "/"
	leader, err := waitServedBy(ctx, cs, url, "")
	if err != nil {
		return err
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
	if err != nil {
		return err
	}
	say("== 4. what the webhook injected into pod %s", pods.Items[0].Name)
	describeInjection(ctx, cs, &pods.Items[0])
	say("   containers as the kubelet runs them:")
	for _, p := range pods.Items {
		say("   %-28s %s", p.Name, containerStates(&p))
	}

	say("== 5. one leader, and only the leader answers the Service (kube-proxy routes the ClusterIP to the pod labelled %s=%s)", contract.LabelRole, contract.RoleLeader)
	say("   Lease %s/%s is held by %s", namespace, app, leader)
	curlTimes(url, 3)

	say("== 6. deleting the leader pod %s: the kubelet stops its app first, then the elector, which releases the Lease", leader)
	old := leader
	if err := failover(ctx, cs, url, leader, func() error {
		if err := cs.CoreV1().Pods(namespace).Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
			return err
		}
		leader, err = waitServedBy(ctx, cs, url, old)
		return err
	}); err != nil {
		return err
	}
	say("   new leader %s", leader)
	curlTimes(url, 3)

	say("== 7. rolling out a new pod template (default RollingUpdate strategy)")
	rolled := time.Now()
	if err := failover(ctx, cs, url, leader, func() error {
		if err := rollOut(ctx, cs); err != nil {
			return err
		}
		if err := waitRolledOut(ctx, cs); err != nil {
			return err
		}
		// A rollout counts as complete while the old pods still terminate; the old leader serves until its app
		// exits, and only then does its elector release the Lease.
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
			return err == nil && len(pods.Items) == 3, nil
		}); err != nil {
			return fmt.Errorf("waiting for the old pods to terminate: %w", err)
		}
		leader, err = waitServedBy(ctx, cs, url, "")
		return err
	}); err != nil {
		return err
	}
	say("   rollout complete in %s: 3/3 replicas updated and available; leader now %s", time.Since(rolled).Round(100*time.Millisecond), leader)
	curlTimes(url, 3)

	if keep {
		say("== the cluster stays up; in another terminal:")
		say("   export KUBECONFIG=%s", n.AdminKubeconfig)
		say("   kubectl -n %s get pods -L %s,%s; curl %s", namespace, contract.LabelRole, contract.LabelMember, url)
		say("   press Ctrl-C to stop it and put the machine back (logs stay in %s)", n.Dir())
		<-ctx.Done()
	}
	return nil
}

func applySamplesOnNode(ctx context.Context, cs kubernetes.Interface) (*corev1.Service, error) {
	sa, err := cluster.ReadManifest[*corev1.ServiceAccount]("config/samples/serviceaccount.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	d, err := cluster.ReadManifest[*appsv1.Deployment]("config/samples/deployment.yaml")
	if err != nil {
		return nil, err
	}
	node.RunSampleApp(&d.Spec.Template)
	if _, err := cs.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	svc, err := cluster.ReadManifest[*corev1.Service]("config/samples/service.yaml")
	if err != nil {
		return nil, err
	}
	return cs.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
}

var httpClient = &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}

// curl asks the Service once, as `curl http://<ClusterIP>/` would, and returns the body (or the error).
func curl(url string) string {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "(no answer: " + err.Error() + ")"
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body))
}

func curlTimes(url string, n int) {
	for range n {
		say("   $ curl %s\n   %s", url, curl(url))
		time.Sleep(200 * time.Millisecond)
	}
}

// waitServedBy waits until the Lease has a holder other than not and the Service is answered by it.
func waitServedBy(ctx context.Context, cs kubernetes.Interface, url, not string) (string, error) {
	var holder, body string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		lease, err := cs.CoordinationV1().Leases(namespace).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		holder = ptr.Deref(lease.Spec.HolderIdentity, "")
		body = curl(url)
		return holder != "" && holder != not && strings.Contains(body, `"pod":"`+holder+`"`), nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the leader to answer %s: %w (holder %q, last answer %s)", url, err, holder, body)
	}
	return holder, nil
}

// failover runs change while asking the Service every 50ms, and prints each change of who answers, with the
// Lease holder at that moment; it fails if a pod that does not hold the Lease answers.
func failover(ctx context.Context, cs kubernetes.Interface, url, leader string, change func() error) error {
	stop := make(chan struct{})
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		last, gapFrom, longest := leader, time.Time{}, time.Duration(0)
		for {
			select {
			case <-stop:
				say("   longest time without an answer: %s", longest.Round(time.Millisecond))
				done <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			body := curl(url)
			pod := between(body, `"pod":"`, `"`)
			now := time.Now()
			if pod == "" {
				if gapFrom.IsZero() {
					gapFrom = now
				}
				pod = "(no answer)"
			} else if !gapFrom.IsZero() {
				longest, gapFrom = max(longest, now.Sub(gapFrom)), time.Time{}
			}
			if pod != last {
				lease, err := cs.CoordinationV1().Leases(namespace).Get(ctx, app, metav1.GetOptions{})
				holder := ""
				if err == nil {
					holder = ptr.Deref(lease.Spec.HolderIdentity, "")
				}
				say("   +%-7s answered by %-28s (Lease holder: %s)", now.Sub(start).Round(10*time.Millisecond), pod, orNobody(holder))
				if pod != "(no answer)" && pod != holder && strings.Contains(body, `"leader":false`) {
					done <- fmt.Errorf("%s answered while %s held the Lease", pod, orNobody(holder))
					return
				}
				last = pod
			}
		}
	}()
	err := change()
	close(stop)
	if ferr := <-done; ferr != nil {
		return ferr
	}
	return err
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return ""
}

func orNobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

func containerStates(p *corev1.Pod) string {
	var parts []string
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		state := "waiting"
		if s.State.Running != nil {
			state = "running"
		}
		parts = append(parts, fmt.Sprintf("%s %s ready=%v", s.Name, state, s.Ready))
	}
	return strings.Join(parts, ", ") + " (pod IP " + p.Status.PodIP + ")"
}
