package integration

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/leader-election/leader-election/pkg/contract"
)

// podShapes runs the real-world pod shapes that only the real API server can judge: a ResourceQuota on
// limits.cpu, the QoS class it computes, and reinvocation against a pod the API server stored with its defaults.
// It needs only the running webhook, not any particular RBAC or policy.
func podShapes(t *testing.T, cs kubernetes.Interface) {
	t.Run("a quota on limits.cpu admits an injected pod whose app sets limits", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		quotaOnLimits(t, cs, ns)
		pod := annotated("quota")
		pod.Spec.Containers[0].Resources = resources("500m", "256Mi", "1", "512Mi")
		stored := createPod(t, cs, ns, "web", pod)
		elector := findContainer(stored.Spec.InitContainers, contract.ContainerName)
		if elector == nil {
			t.Fatal("pod admitted without the elector")
		}
		if _, ok := elector.Resources.Limits[corev1.ResourceCPU]; !ok {
			t.Errorf("elector has no CPU limit: %v", elector.Resources.Limits)
		}

		// The quota really is enforcing: an app container without a CPU limit is refused by it.
		loose := annotated("quota-loose")
		_, err := cs.CoreV1().Pods(ns).Create(t.Context(), withSA(loose, "web", t, cs, ns), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "limits.cpu") {
			t.Fatalf("app container without a CPU limit in a limits.cpu quota: %v, want the quota's refusal", err)
		}
	})

	t.Run("a Guaranteed pod stays Guaranteed", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		pod := annotated("guaranteed")
		pod.Spec.Containers[0].Resources = resources("1", "512Mi", "1", "512Mi")
		stored := createPod(t, cs, ns, "web", pod)
		if findContainer(stored.Spec.InitContainers, contract.ContainerName) == nil {
			t.Fatal("pod admitted without the elector")
		}
		if stored.Status.QOSClass != corev1.PodQOSGuaranteed {
			t.Errorf("QoS class %q, want Guaranteed", stored.Status.QOSClass)
		}
		burstable := annotated("burstable")
		burstable.Spec.Containers[0].Resources = resources("100m", "128Mi", "1", "512Mi")
		if got := createPod(t, cs, ns, "web", burstable).Status.QOSClass; got != corev1.PodQOSBurstable {
			t.Errorf("Burstable app: QoS class %q, want Burstable (is the class really computed?)", got)
		}
	})

	t.Run("pod-level resources: the elector runs within the pod's budget", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		quotaOnLimits(t, cs, ns)
		pod := annotated("pod-level")
		budget := resources("1", "512Mi", "1", "512Mi")
		pod.Spec.Resources = &budget
		pod.Spec.Containers[0].Resources = resources("1", "512Mi", "1", "512Mi")
		stored := createPod(t, cs, ns, "web", pod)
		if findContainer(stored.Spec.InitContainers, contract.ContainerName) == nil {
			t.Fatal("pod admitted without the elector")
		}
		if stored.Status.QOSClass != corev1.PodQOSGuaranteed {
			t.Errorf("QoS class %q, want Guaranteed", stored.Status.QOSClass)
		}
	})

	t.Run("pod-level resources: annotations beyond the budget are refused naming the annotation", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		fits := annotated("budget-fits")
		fits.Annotations[contract.AnnotationCPURequest] = "100m"
		budget := resources("1", "512Mi", "1", "512Mi")
		fits.Spec.Resources = &budget
		fits.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("900m")}}
		if findContainer(createPod(t, cs, ns, "web", fits).Spec.InitContainers, contract.ContainerName) == nil {
			t.Fatal("pod admitted without the elector")
		}
		// The API server would refuse both, naming spec.resources and no annotation.
		over := annotated("budget-request-over")
		over.Annotations[contract.AnnotationCPURequest] = "150m"
		over.Spec.Resources = &budget
		over.Spec.Containers[0].Resources = fits.Spec.Containers[0].Resources
		above := annotated("budget-limit-above")
		above.Annotations[contract.AnnotationCPULimit] = "2"
		above.Spec.Resources = &corev1.ResourceRequirements{Limits: budget.Limits}
		for key, pod := range map[string]*corev1.Pod{contract.AnnotationCPURequest: over, contract.AnnotationCPULimit: above} {
			_, err := cs.CoreV1().Pods(ns).Create(t.Context(), withSA(pod, "web", t, cs, ns), metav1.CreateOptions{})
			if err == nil || !strings.Contains(err.Error(), "annotation "+key) || !strings.Contains(err.Error(), "spec.resources") {
				t.Errorf("pod %s: %v, want the webhook's refusal naming %s and the pod's budget", pod.Name, err, key)
			}
		}
	})

	t.Run("reinvocation accepts the stored injection and refuses a look-alike", func(t *testing.T) {
		ns := newNamespace(t, cs, map[string]string{contract.LabelEnforce: "true"})
		first := createPod(t, cs, ns, "web", ownedByReplicaSet(plainPod("first"), "api-5f7d8", "5f7d8"))
		if findContainer(first.Spec.InitContainers, contract.ContainerName) == nil {
			t.Fatal("replica in an enforcing namespace was not injected")
		}

		// The stored pod, with every default the API server filled in, sent again as a new pod: this is what a
		// reinvocation sees, and it must pass unchanged.
		copied := storedCopy(first, "copied")
		second := createPod(t, cs, ns, "web", copied)
		if n := countElectors(second); n != 1 {
			t.Fatalf("a copy of an injected pod has %d electors, want 1", n)
		}
		if !equality.Semantic.DeepEqual(second.Spec.InitContainers, first.Spec.InitContainers) {
			t.Errorf("the copy's init containers changed:\n got %+v\nwant %+v", second.Spec.InitContainers, first.Spec.InitContainers)
		}

		// A look-alike: the copied annotation beside a container that only carries the elector's name.
		fake := storedCopy(first, "fake")
		for i := range fake.Spec.InitContainers {
			if fake.Spec.InitContainers[i].Name == contract.ContainerName {
				fake.Spec.InitContainers[i].Image = "example/does-nothing:1.0"
				fake.Spec.InitContainers[i].Command = []string{"sleep", "infinity"}
			}
		}
		_, err := cs.CoreV1().Pods(ns).Create(t.Context(), fake, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "not what this webhook injects") {
			t.Fatalf("look-alike elector in an enforcing namespace: %v, want a refusal", err)
		}
	})

	t.Run("the app's readinessProbe becomes the elector's check, and its stored injection is recognised", func(t *testing.T) {
		ns := newNamespace(t, cs, map[string]string{contract.LabelEnforce: "true"})
		for _, tc := range []struct {
			name      string
			probe     corev1.Probe
			wantCheck string
		}{
			// Written without the fields the API server defaults: the webhook sees the defaulted probe, a
			// reinvocation the same, and both must build one env.
			{"http-named-port", corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}},
				`{"httpGet":{"path":"/","port":8080,"scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3}`},
			{"grpc", corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}, PeriodSeconds: 2},
				`{"grpc":{"port":9090,"service":""},"timeoutSeconds":1,"periodSeconds":2,"successThreshold":1,"failureThreshold":3}`},
		} {
			pod := ownedByReplicaSet(plainPod(tc.name), "api-5f7d8", "5f7d8")
			pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "grpc", ContainerPort: 9090}}
			pod.Spec.Containers[0].ReadinessProbe = &tc.probe
			stored := createPod(t, cs, ns, "web", pod)
			elector := findContainer(stored.Spec.InitContainers, contract.ContainerName)
			if elector == nil {
				t.Fatalf("%s: not injected", tc.name)
			}
			env := map[string]corev1.EnvVar{}
			for _, e := range elector.Env {
				env[e.Name] = e
			}
			if got := env[contract.EnvAppCheck].Value; got != tc.wantCheck {
				t.Errorf("%s: %s = %s\nwant %s", tc.name, contract.EnvAppCheck, got, tc.wantCheck)
			}
			if e := env[contract.EnvPodIP]; e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
				t.Errorf("%s: %s = %+v, want the downward API's status.podIP", tc.name, contract.EnvPodIP, e)
			}
			if gate := stored.Annotations[contract.AnnotationHealthGate]; gate != `gated: readinessProbe of container "app"` {
				t.Errorf("%s: %s = %q", tc.name, contract.AnnotationHealthGate, gate)
			}
			second := createPod(t, cs, ns, "web", storedCopy(stored, tc.name+"-copy"))
			if !equality.Semantic.DeepEqual(second.Spec.InitContainers, stored.Spec.InitContainers) {
				t.Errorf("%s: the stored injection sent again changed:\n got %+v\nwant %+v", tc.name, second.Spec.InitContainers, stored.Spec.InitContainers)
			}
		}
	})

	t.Run("host-network and Windows pods are refused naming the field", func(t *testing.T) {
		ns := newNamespace(t, cs, nil)
		host := annotated("host")
		host.Spec.HostNetwork = true
		windows := annotated("windows")
		windows.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
		for want, pod := range map[string]*corev1.Pod{"spec.hostNetwork": host, "spec.os.name": windows} {
			_, err := cs.CoreV1().Pods(ns).Create(t.Context(), withSA(pod, "web", t, cs, ns), metav1.CreateOptions{})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("pod %s: %v, want a refusal naming %s", pod.Name, err, want)
			}
		}
	})
}

// quotaOnLimits creates a ResourceQuota tracking limits.cpu and limits.memory, and no LimitRange. No
// controller-manager runs here, so its status (what the quota admission plugin checks against) is set by hand.
func quotaOnLimits(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	hard := corev1.ResourceList{corev1.ResourceLimitsCPU: resource.MustParse("4"), corev1.ResourceLimitsMemory: resource.MustParse("4Gi")}
	q, err := cs.CoreV1().ResourceQuotas(ns).Create(t.Context(), &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "limits"},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q.Status = corev1.ResourceQuotaStatus{Hard: hard, Used: corev1.ResourceList{
		corev1.ResourceLimitsCPU: resource.MustParse("0"), corev1.ResourceLimitsMemory: resource.MustParse("0"),
	}}
	if _, err := cs.CoreV1().ResourceQuotas(ns).UpdateStatus(t.Context(), q, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func resources(cpuRequest, memoryRequest, cpuLimit, memoryLimit string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuRequest), corev1.ResourceMemory: resource.MustParse(memoryRequest)},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLimit), corev1.ResourceMemory: resource.MustParse(memoryLimit)},
	}
}

// storedCopy is a stored pod as a client would send it again under a new name: metadata reduced to what a
// client sets, the spec (with the API server's defaults) kept.
func storedCopy(stored *corev1.Pod, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: stored.Namespace, Labels: stored.Labels, Annotations: stored.Annotations,
			OwnerReferences: stored.OwnerReferences,
		},
		Spec: *stored.Spec.DeepCopy(),
	}
}

func countElectors(pod *corev1.Pod) int {
	n := 0
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == contract.ContainerName {
				n++
			}
		}
	}
	return n
}
