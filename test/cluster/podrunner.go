package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
)

// restartDelay is how long the stand-in waits before restarting an exited elector; the kubelet restarts a
// crashed container at once the first time and backs off after.
const restartDelay = 500 * time.Millisecond

// podRunner is one pod on the node: its elector process, its probes and its status.
type podRunner struct {
	k                    *Kubelet
	namespace, name, dir string
	uid                  types.UID
	addrIndex            int
	loopbackIP, podIP    string

	mu          sync.Mutex
	elector     *corev1.Container // nil when the pod has no elector
	cmd         *exec.Cmd
	exitedCh    chan struct{}
	ready       bool
	restarts    int32
	terminating bool
	startedAt   metav1.Time
	holdUntil   time.Time     // no restart before this (a crash loop's back-off)
	done        chan struct{} // closed when the runner stopped for good
	stopOnce    sync.Once
	ctx         context.Context
	cancel      context.CancelFunc
}

func (r *podRunner) start(ctx context.Context, pod *corev1.Pod) error {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.startedAt = metav1.Now()
	r.elector = electorContainer(pod)
	if r.elector == nil {
		return r.writeStatus(ctx)
	}
	env, err := r.environment(ctx, pod)
	if err != nil {
		r.cancel()
		r.k.forget(r)
		return err
	}
	if err := r.writeStatus(ctx); err != nil {
		return err
	}
	go r.supervise(env)
	if p := r.elector.ReadinessProbe; p != nil {
		go r.probe(p, func(ok bool, _ bool) { r.setReady(ok) })
	}
	if p := r.elector.LivenessProbe; p != nil {
		go r.probe(p, func(ok bool, justFailed bool) {
			if justFailed {
				r.k.logf("pod %s/%s: liveness probe failed, restarting the elector", r.namespace, r.name)
				r.signal(syscall.SIGKILL)
			}
		})
	}
	return nil
}

// electorContainer finds the injected elector: a native sidecar or, in container mode, a regular container.
func electorContainer(pod *corev1.Pod) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == contract.ContainerName {
				return list[i].DeepCopy()
			}
		}
	}
	return nil
}

// environment resolves the container's env as the kubelet would and adds the stand-in's network and credentials:
// the pod's own address to listen on and a kubeconfig holding a token bound to this pod.
func (r *podRunner) environment(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	var env []string
	for _, e := range r.elector.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil:
			v, err := r.fieldValue(pod, e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env = append(env, e.Name+"="+v)
		default:
			return nil, fmt.Errorf("env %s: only values and field references are supported here", e.Name)
		}
	}
	kubeconfig, err := r.tokenKubeconfig(ctx, pod)
	if err != nil {
		return nil, err
	}
	// Every stand-in pod shares this machine's network namespace, so each elector gets a control socket of its
	// own (in a real pod, the default @leader-election belongs to the pod alone).
	return append(env, "ELECTOR_BIND_ADDRESS="+r.loopbackIP, "ELECTOR_CONTROL_SOCKET=@leader-election-"+r.loopbackIP,
		"KUBECONFIG="+kubeconfig), nil
}

func (r *podRunner) fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return r.podIP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if key, ok := strings.CutPrefix(path, prefix+"['"); ok {
			return m[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("field %s is not supported by the node stand-in", path)
}

// tokenKubeconfig asks the TokenRequest API for a token of the pod's ServiceAccount bound to this pod, as the
// kubelet does for a projected token volume, and writes a kubeconfig with it.
func (r *podRunner) tokenKubeconfig(ctx context.Context, pod *corev1.Pod) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := r.k.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", pod.Namespace, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: r.k.cfg.Host, CertificateAuthorityData: r.k.cfg.CAData}
	cfg.AuthInfos["pod"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "pod", Namespace: pod.Namespace}
	cfg.CurrentContext = "pod"
	path := filepath.Join(r.dir, "kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// supervise runs the elector and restarts it when it exits, as restartPolicy Always asks, until the pod ends.
func (r *podRunner) supervise(env []string) {
	defer close(r.done)
	for {
		log, err := os.OpenFile(filepath.Join(r.dir, "elector.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			r.k.logf("pod %s/%s: %v", r.namespace, r.name, err)
			return
		}
		cmd := exec.Command(r.k.electorBin)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = log, log
		r.mu.Lock()
		if r.terminating {
			r.mu.Unlock()
			log.Close()
			return
		}
		err = cmd.Start()
		exitedCh := make(chan struct{})
		r.cmd, r.exitedCh = cmd, exitedCh
		r.mu.Unlock()
		if err != nil {
			log.Close()
			r.k.logf("pod %s/%s: starting the elector: %v", r.namespace, r.name, err)
			return
		}
		_ = cmd.Wait()
		log.Close()
		close(exitedCh)
		r.mu.Lock()
		terminating := r.terminating
		if !terminating {
			r.restarts++
		}
		r.mu.Unlock()
		r.setReady(false)
		if terminating {
			return
		}
		r.mu.Lock()
		delay := max(restartDelay, time.Until(r.holdUntil))
		r.mu.Unlock()
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// probe runs an HTTP probe as the kubelet would: every period, with its timeout and thresholds. After each attempt
// it reports the probe's state, and whether this attempt is the one that reached the failure threshold.
func (r *podRunner) probe(p *corev1.Probe, report func(ok, justFailed bool)) {
	if p.HTTPGet == nil {
		return
	}
	port := p.HTTPGet.Port.IntValue()
	if p.HTTPGet.Port.Type == intstr.String {
		for _, cp := range r.elector.Ports {
			if cp.Name == p.HTTPGet.Port.StrVal {
				port = int(cp.ContainerPort)
			}
		}
	}
	url := fmt.Sprintf("http://%s/%s", netJoin(r.loopbackIP, port), strings.TrimPrefix(p.HTTPGet.Path, "/"))
	client := &http.Client{Timeout: time.Duration(max(p.TimeoutSeconds, 1)) * time.Second}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	success, failure := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	select {
	case <-r.ctx.Done():
		return
	case <-time.After(time.Duration(p.InitialDelaySeconds) * time.Second):
	}
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	var okRun, failRun int32
	state := false
	for {
		ok := false
		if resp, err := client.Get(url); err == nil {
			ok = resp.StatusCode >= 200 && resp.StatusCode < 400
			resp.Body.Close()
		}
		if ok {
			okRun, failRun = okRun+1, 0
			if okRun >= success {
				state = true
			}
		} else {
			okRun, failRun = 0, failRun+1
			if failRun >= failure {
				state = false
			}
		}
		report(state, failRun == failure)
		select {
		case <-r.ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func netJoin(ip string, port int) string { return ip + ":" + strconv.Itoa(port) }

func (r *podRunner) setReady(ready bool) {
	r.mu.Lock()
	changed := r.ready != ready
	r.ready = ready
	r.mu.Unlock()
	if changed && r.ctx.Err() == nil {
		if err := r.writeStatus(r.ctx); err != nil && r.ctx.Err() == nil {
			r.k.logf("pod %s/%s: writing status: %v", r.namespace, r.name, err)
		}
	}
}

func (r *podRunner) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(sig)
	}
}

func (r *podRunner) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	select {
	case <-r.exitedCh:
		return 0
	default:
		return r.cmd.Process.Pid
	}
}

// terminate is the kubelet's pod deletion: SIGTERM, SIGKILL after the grace period, then the final delete.
func (r *podRunner) terminate(grace time.Duration) {
	r.stop(grace)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := r.k.cs.CoreV1().Pods(r.namespace).Delete(ctx, r.name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &r.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		r.k.logf("pod %s/%s: final delete: %v", r.namespace, r.name, err)
	}
}

// stop ends the elector (SIGTERM, then SIGKILL after grace) and the probes, and frees the address.
func (r *podRunner) stop(grace time.Duration) {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.terminating = true
		cmd, exitedCh := r.cmd, r.exitedCh
		r.mu.Unlock()
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exitedCh:
			case <-time.After(grace):
				_ = cmd.Process.Kill()
				<-exitedCh
			}
		}
		if r.cancel != nil {
			r.cancel()
		}
		r.k.forget(r)
	})
}

// writeStatus writes what a kubelet would: running, the addresses, and readiness from the elector's probe.
func (r *podRunner) writeStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := r.k.cs.CoreV1().Pods(r.namespace).Get(ctx, r.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if pod.UID != r.uid {
			return nil
		}
		r.mu.Lock()
		pod.Status = r.status(pod)
		r.mu.Unlock()
		_, err = r.k.cs.CoreV1().Pods(r.namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
}

// status builds the pod status; r.mu is held.
func (r *podRunner) status(pod *corev1.Pod) corev1.PodStatus {
	electorReady := r.elector == nil || r.ready
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: r.startedAt}}
	containerStatus := func(c corev1.Container, ready bool, restarts int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "stand-in://" + c.Image, ContainerID: "stand-in://" + string(r.uid) + "/" + c.Name,
			Ready: ready, Started: ptr.To(true), State: running, RestartCount: restarts,
		}
	}
	st := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "198.18.255.254",
		HostIPs:   []corev1.HostIP{{IP: "198.18.255.254"}},
		PodIP:     r.podIP,
		PodIPs:    []corev1.PodIP{{IP: r.podIP}},
		StartTime: &r.startedAt,
		QOSClass:  pod.Status.QOSClass,
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			ready, restarts := true, int32(0)
			if c.Name == contract.ContainerName {
				ready, restarts = electorReady, r.restarts
			}
			st.InitContainerStatuses = append(st.InitContainerStatuses, containerStatus(c, ready, restarts))
			continue
		}
		cs := containerStatus(c, false, 0)
		cs.Started = ptr.To(false)
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: r.startedAt, FinishedAt: r.startedAt}}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	for _, c := range pod.Spec.Containers {
		ready, restarts := true, int32(0)
		if c.Name == contract.ContainerName {
			ready, restarts = electorReady, r.restarts
		}
		st.ContainerStatuses = append(st.ContainerStatuses, containerStatus(c, ready, restarts))
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		status := corev1.ConditionFalse
		if ok {
			status = corev1.ConditionTrue
		}
		last := metav1.Now()
		for _, old := range pod.Status.Conditions {
			if old.Type == t && old.Status == status {
				last = old.LastTransitionTime
			}
		}
		return corev1.PodCondition{Type: t, Status: status, LastTransitionTime: last}
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, true),
		cond(corev1.PodInitialized, true),
		cond(corev1.ContainersReady, electorReady),
		cond(corev1.PodReady, electorReady),
		cond(corev1.PodScheduled, true),
	}
	return st
}
