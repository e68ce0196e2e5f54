package inject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/contract"
)

// FuzzMutate feeds arbitrary annotation values and pod shapes to Mutate: it must never panic, must refuse
// without changing the pod, must leave what the user wrote alone (contract 5: labels, annotations, the
// ServiceAccount name and appended volumes and containers only), must add no volume, container or port that
// clashes with the user's, and an injected pod must be left alone by a second call.
func FuzzMutate(f *testing.F) {
	f.Add("true", "web", "15s", "10s", "2s", "8642", "label", "", "", false, []byte(`{"spec":{"containers":[{"name":"app","ports":[{"containerPort":8642}]}]}}`))
	f.Add("false", "", "1s", "1h", "-1s", "0", "readiness", "5m", "istio", true, []byte(`{}`))
	f.Add("true", "Bad_Name", "15500ms", "10s", "2s", "65536", "x", "1", "none", true, []byte(`{"spec":{"automountServiceAccountToken":false}}`))
	f.Add("true", "", "", "", "", "", "", "", "", false, []byte(`{"spec":{"automountServiceAccountToken":false,"volumes":[{"name":"leader-election-token","emptyDir":{}}],"containers":[{"name":"app","ports":[{"containerPort":8642,"protocol":"UDP"}]},{"name":"istio-proxy","securityContext":{"runAsUser":1337}}]}}`))
	f.Add("true", "", "", "", "", "", "", "100m", "", true, []byte(`{"spec":{"containers":[{"name":"app","resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}}`))
	f.Add("true", "", "", "", "", "", "", "200m", "", false, []byte(`{"spec":{"resources":{"requests":{"cpu":"1"},"limits":{"cpu":"1"}},"containers":[{"name":"app","resources":{"requests":{"cpu":"1"}}}]}}`))
	f.Add("", "", "", "", "", "", "", "", "", true, []byte(`{"metadata":{"annotations":{"leader-election/injected":"v0.1.0/75b6e75a814e"}},"spec":{"initContainers":[{"name":"leader-elector","image":"busybox","restartPolicy":"Always"}]}}`))
	f.Add("true", "", "", "", "", "", "", "", "", false, []byte(`{"metadata":{"annotations":{"leader-election/health-check":"grpc://:grpc/x.v1.X","leader-election/health-failure-threshold":"2"}},"spec":{"containers":[{"name":"app","ports":[{"name":"grpc","containerPort":9090}],"readinessProbe":{"exec":{"command":["true"]}}}]}}`))
	f.Add("true", "", "", "", "", "", "", "", "istio", false, []byte(`{"metadata":{"annotations":{"leader-election/health-container":"b","leader-election/handover":"false"}},"spec":{"containers":[{"name":"a"},{"name":"b","ports":[{"name":"h","containerPort":80}],"readinessProbe":{"httpGet":{"port":"h","host":"localhost"}}}]}}`))
	f.Fuzz(func(t *testing.T, enabled, lease, dur, renew, retry, port, traffic, cpuLimit, mesh string, enforced bool, podJSON []byte) {
		pod := deploymentPod(nil)
		_ = yaml.Unmarshal(podJSON, pod) // any shape that decodes, over a valid replica
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		for k, v := range map[string]string{
			contract.AnnotationEnabled: enabled, contract.AnnotationLeaseName: lease, contract.AnnotationLeaseDuration: dur,
			contract.AnnotationRenewDeadline: renew, contract.AnnotationRetryPeriod: retry, contract.AnnotationPort: port, contract.AnnotationTraffic: traffic,
			contract.AnnotationCPULimit: cpuLimit, contract.AnnotationMesh: mesh,
		} {
			if v != "" {
				pod.Annotations[k] = v
			}
		}
		before := pod.DeepCopy()
		out, changed, err := Mutate(pod, testConfig(), enforced)
		if !equality.Semantic.DeepEqual(before, pod) {
			t.Fatal("Mutate modified its input")
		}
		if err != nil || !changed {
			if out != pod {
				t.Fatal("a refused or untouched pod must come back as it was given")
			}
			return
		}
		if !hasContainer(out, contract.ContainerName) || out.Annotations[contract.AnnotationInjected] == "" {
			t.Fatal("an injected pod lacks the elector or the injected annotation")
		}
		if hasContainer(pod, contract.ContainerName) { // a recognised injection: only the role label may go
			unlabelled := pod.DeepCopy()
			delete(unlabelled.Labels, contract.LabelRole)
			if !equality.Semantic.DeepEqual(out, unlabelled) {
				t.Fatal("reinvocation changed more than the role label")
			}
			return
		}
		checkOnlyAppended(t, pod, out)
		checkElectorAcceptsTheCheck(t, out)
		again, changedAgain, err := Mutate(out, testConfig(), enforced)
		if err != nil || changedAgain || again != out {
			t.Fatalf("reinvocation: changed=%v err=%v", changedAgain, err)
		}
	})
}

// checkOnlyAppended fails unless out is pod with volumes and containers appended (labels, annotations and the
// ServiceAccount name aside), the appended names are new, and no appended port clashes with a user's port.
func checkOnlyAppended(t *testing.T, pod, out *corev1.Pod) {
	t.Helper()
	trimmed := out.DeepCopy()
	trimmed.Labels, trimmed.Annotations = pod.Labels, pod.Annotations
	trimmed.Spec.ServiceAccountName = pod.Spec.ServiceAccountName
	if len(out.Spec.Volumes) < len(pod.Spec.Volumes) || len(out.Spec.InitContainers) < len(pod.Spec.InitContainers) ||
		len(out.Spec.Containers) < len(pod.Spec.Containers) {
		t.Fatal("Mutate removed a volume or container")
	}
	trimmed.Spec.Volumes = trimmed.Spec.Volumes[:len(pod.Spec.Volumes)]
	trimmed.Spec.InitContainers = trimmed.Spec.InitContainers[:len(pod.Spec.InitContainers)]
	trimmed.Spec.Containers = trimmed.Spec.Containers[:len(pod.Spec.Containers)]
	if !equality.Semantic.DeepEqual(normalise(trimmed), normalise(pod)) {
		t.Fatal("Mutate changed something it may only append to")
	}
	volumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = true
	}
	for _, v := range out.Spec.Volumes[len(pod.Spec.Volumes):] {
		if volumes[v.Name] {
			t.Fatalf("injected volume name %q is taken", v.Name)
		}
		volumes[v.Name] = true
	}
	if n := len(appendedContainers(pod, out)); n != 1 || hasContainer(pod, contract.ContainerName) {
		t.Fatalf("%d containers injected beside the user's (had %s already: %v), want exactly one elector", n, contract.ContainerName, hasContainer(pod, contract.ContainerName))
	}
	for _, c := range appendedContainers(pod, out) {
		for _, p := range c.Ports {
			if owner := declaredBy(pod, p); owner != "" {
				t.Fatalf("injected port %d/%s clashes with container %q", p.ContainerPort, protocolOf(p), owner)
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Fatalf("injected container mounts missing volume %q", m.Name)
			}
		}
	}
}

// normalise maps empty slices to nil, which the DeepCopy-and-trim above may produce for absent lists.
func normalise(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	if len(p.Spec.Volumes) == 0 {
		p.Spec.Volumes = nil
	}
	if len(p.Spec.InitContainers) == 0 {
		p.Spec.InitContainers = nil
	}
	if len(p.Spec.Containers) == 0 {
		p.Spec.Containers = nil
	}
	return p
}
