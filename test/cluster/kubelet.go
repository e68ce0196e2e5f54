package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// NodeName is the one node of the local cluster.
const NodeName = "local-node"

// Kubelet stands in for the scheduler and the kubelet of one node. It binds pending pods to the node, gives each
// pod its own loopback address, runs the pod's injected elector container as a real process with the pod's
// environment (downward-API values resolved) and a bound ServiceAccount token from the TokenRequest API, probes it
// exactly as the pod's probes say, writes the pod's status from those probes, and on deletion sends SIGTERM and,
// after the grace period, SIGKILL. Application containers are not run; they count as started and ready.
//
// Addresses: a pod's processes listen on 127.0.a.b. EndpointSlice validation refuses loopback addresses, so the
// pod's status.podIP is the same a.b in 198.18.0.0/15, the range set aside for benchmarking networks (RFC 2544).
// Nothing ever connects to a status address; probes and tests use the loopback one (LoopbackIP).
type Kubelet struct {
	cfg        *rest.Config
	cs         kubernetes.Interface
	electorBin string
	workDir    string
	logf       func(string, ...any)

	queue  workqueue.TypedRateLimitingInterface[types.NamespacedName]
	lister cache.Indexer

	mu       sync.Mutex
	pods     map[types.UID]*podRunner
	nextAddr int
	freeAddr []int
}

// NewKubelet returns a stand-in that runs electorBin for injected pods, with logs and tokens under workDir.
func NewKubelet(cfg *rest.Config, cs kubernetes.Interface, electorBin, workDir string, logf func(string, ...any)) *Kubelet {
	return &Kubelet{
		cfg: cfg, cs: cs, electorBin: electorBin, workDir: workDir, logf: logf,
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]()),
		pods:     map[types.UID]*podRunner{},
		nextAddr: 2, // 127.0.0.1 is the API server's and the webhook's
	}
}

// Run registers the node and syncs pods until ctx ends, then stops every pod's processes. It reports on ready
// once the node exists and the pod informer has synced.
func (k *Kubelet) Run(ctx context.Context, ready chan<- error) {
	if err := k.registerNode(ctx); err != nil {
		ready <- err
		return
	}
	factory := informers.NewSharedInformerFactory(k.cs, 0)
	informer := factory.Core().V1().Pods().Informer()
	k.lister = informer.GetIndexer()
	enqueue := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			k.queue.Add(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		ready <- fmt.Errorf("pod informer did not sync")
		return
	}
	var workers sync.WaitGroup
	for range 4 {
		workers.Go(func() {
			for k.processNext(ctx) {
			}
		})
	}
	ready <- nil
	<-ctx.Done()
	k.queue.ShutDown()
	workers.Wait()
	factory.Shutdown()

	k.mu.Lock()
	runners := make([]*podRunner, 0, len(k.pods))
	for _, r := range k.pods {
		runners = append(runners, r)
	}
	k.mu.Unlock()
	var stopping sync.WaitGroup
	for _, r := range runners {
		stopping.Go(func() { r.stop(2 * time.Second) })
	}
	stopping.Wait()
}

func (k *Kubelet) processNext(ctx context.Context) bool {
	key, shutdown := k.queue.Get()
	if shutdown {
		return false
	}
	defer k.queue.Done(key)
	if err := k.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			runtime.HandleError(fmt.Errorf("node stand-in: pod %s: %w", key, err))
		}
		k.queue.AddRateLimited(key)
		return true
	}
	k.queue.Forget(key)
	return true
}

// sync moves one pod towards what a kubelet would make of it: bound, running, or gone.
func (k *Kubelet) sync(ctx context.Context, key types.NamespacedName) error {
	obj, exists, err := k.lister.GetByKey(key.String())
	if err != nil {
		return err
	}
	if !exists {
		// Deleted outright (grace period 0): stop whatever ran under that name.
		for _, r := range k.runnersNamed(key) {
			go r.stop(0)
		}
		return nil
	}
	pod := obj.(*corev1.Pod)
	k.mu.Lock()
	r := k.pods[pod.UID]
	k.mu.Unlock()
	switch {
	case pod.Spec.NodeName == "" && pod.DeletionTimestamp == nil:
		return k.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: NodeName},
		}, metav1.CreateOptions{})
	case pod.Spec.NodeName != NodeName:
		return nil
	case pod.DeletionTimestamp != nil:
		if r == nil {
			err := k.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, *metav1.NewDeleteOptions(0))
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		grace := time.Duration(0)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		}
		go r.terminate(grace)
		return nil
	case r == nil:
		r, err := k.newRunner(pod)
		if err != nil {
			return err
		}
		return r.start(ctx, pod)
	}
	return nil
}

func (k *Kubelet) runnersNamed(key types.NamespacedName) []*podRunner {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*podRunner
	for _, r := range k.pods {
		if r.namespace == key.Namespace && r.name == key.Name {
			out = append(out, r)
		}
	}
	return out
}

func (k *Kubelet) newRunner(pod *corev1.Pod) (*podRunner, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n int
	if len(k.freeAddr) > 0 {
		n, k.freeAddr = k.freeAddr[len(k.freeAddr)-1], k.freeAddr[:len(k.freeAddr)-1]
	} else {
		n = k.nextAddr
		k.nextAddr++
	}
	a, b := n/250, n%250+1
	if a > 255 {
		return nil, fmt.Errorf("out of loopback addresses")
	}
	dir := filepath.Join(k.workDir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)[:8])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &podRunner{
		k: k, namespace: pod.Namespace, name: pod.Name, uid: pod.UID, addrIndex: n, dir: dir,
		loopbackIP: fmt.Sprintf("127.0.%d.%d", a, b),
		podIP:      fmt.Sprintf("198.18.%d.%d", a, b),
		done:       make(chan struct{}),
	}
	k.pods[pod.UID] = r
	return r, nil
}

// forget releases a finished pod's address.
func (k *Kubelet) forget(r *podRunner) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pods[r.uid] == r {
		delete(k.pods, r.uid)
		k.freeAddr = append(k.freeAddr, r.addrIndex)
	}
}

// LoopbackIP returns the address a running pod's processes listen on, "" if the pod does not run here.
func (k *Kubelet) LoopbackIP(uid types.UID) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r := k.pods[uid]; r != nil {
		return r.loopbackIP
	}
	return ""
}

// ElectorPID returns the process ID of a running pod's elector, 0 if none runs.
func (k *Kubelet) ElectorPID(uid types.UID) int {
	k.mu.Lock()
	r := k.pods[uid]
	k.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.pid()
}

// KillElector sends SIGKILL to a pod's elector and holds its restart back for at least backOff, like a
// container in crash-loop back-off. It returns false when no elector runs for the pod.
func (k *Kubelet) KillElector(uid types.UID, backOff time.Duration) bool {
	k.mu.Lock()
	r := k.pods[uid]
	k.mu.Unlock()
	if r == nil || r.pid() == 0 {
		return false
	}
	r.mu.Lock()
	r.holdUntil = time.Now().Add(backOff)
	r.mu.Unlock()
	r.signal(syscall.SIGKILL)
	return true
}

func (k *Kubelet) registerNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: NodeName, Labels: map[string]string{
		"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": "local",
	}}}
	created, err := k.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("registering node: %w", err)
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods: resource.MustParse("1000"),
		},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "StandIn",
			LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.255.254"}, {Type: corev1.NodeHostName, Address: NodeName}},
	}
	created.Status.Allocatable = created.Status.Capacity
	_, err = k.cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}
