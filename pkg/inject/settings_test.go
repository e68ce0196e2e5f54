package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// deploymentPod is a replica of Deployment "web" with the given annotations added to the opt-in.
func deploymentPod(annotations map[string]string) *corev1.Pod {
	ann := map[string]string{AnnotationEnabled: "true"}
	for k, v := range annotations {
		ann[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-6b7c9d-", Namespace: "shop", Annotations: ann,
			Labels: map[string]string{"pod-template-hash": "6b7c9d"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-6b7c9d", UID: "u1", Controller: ptrTo(true),
			}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "example/web:1.0", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestRefusedAnnotations checks that every bad value is refused with a message naming the key, the value and
// what is accepted.
func TestRefusedAnnotations(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		wantAll     []string // substrings the error must contain
	}{
		{"enabled not a boolean", map[string]string{AnnotationEnabled: "yes"},
			[]string{AnnotationEnabled, `"yes"`, `"true" or "false"`}},
		{"enabled upper case", map[string]string{AnnotationEnabled: "True"},
			[]string{AnnotationEnabled, `"True"`}},
		{"lease name upper case", map[string]string{AnnotationLeaseName: "Web"},
			[]string{AnnotationLeaseName, `"Web"`, "DNS-1123 subdomain"}},
		{"lease name empty", map[string]string{AnnotationLeaseName: ""},
			[]string{AnnotationLeaseName, `""`, "DNS-1123 subdomain"}},
		{"lease name too long", map[string]string{AnnotationLeaseName: strings.Repeat("a", 254)},
			[]string{AnnotationLeaseName, "253"}},
		{"lease duration not a duration", map[string]string{AnnotationLeaseDuration: "15"},
			[]string{AnnotationLeaseDuration, `"15"`, "Go duration"}},
		{"lease duration negative", map[string]string{AnnotationLeaseDuration: "-15s"},
			[]string{AnnotationLeaseDuration, `"-15s"`, "positive"}},
		{"renew deadline zero", map[string]string{AnnotationRenewDeadline: "0s"},
			[]string{AnnotationRenewDeadline, `"0s"`, "positive"}},
		{"retry period garbage", map[string]string{AnnotationRetryPeriod: "often"},
			[]string{AnnotationRetryPeriod, `"often"`}},
		{"renew not shorter than lease", map[string]string{AnnotationLeaseDuration: "10s"},
			[]string{AnnotationLeaseDuration, "lease-duration (10s) must be longer than renew-deadline (10s)", "250ms <= retry-period < renew-deadline"}},
		{"retry not shorter than renew", map[string]string{AnnotationRetryPeriod: "10s"},
			[]string{AnnotationRetryPeriod, "renew-deadline (10s) must be longer than retry-period (10s)"}},
		{"lease duration fractional", map[string]string{AnnotationLeaseDuration: "15500ms"},
			[]string{AnnotationLeaseDuration, "whole number of seconds"}},
		{"margin the probe cannot see", map[string]string{AnnotationLeaseDuration: "3s", AnnotationRenewDeadline: "1900ms", AnnotationRetryPeriod: "500ms"},
			[]string{AnnotationLeaseDuration, AnnotationRenewDeadline, "lease-duration (3s) must exceed renew-deadline (1.9s) by at least 2s", "readiness probe"}},
		{"the issue's 2s / 1.9s / 0.5s", map[string]string{AnnotationLeaseDuration: "2s", AnnotationRenewDeadline: "1900ms", AnnotationRetryPeriod: "500ms"},
			[]string{AnnotationLeaseDuration, "lease-duration (2s) must be between 3s and 5m0s"}},
		{"the old fast timings", map[string]string{AnnotationLeaseDuration: "2s", AnnotationRenewDeadline: "1500ms", AnnotationRetryPeriod: "500ms"},
			[]string{AnnotationLeaseDuration, "lease-duration (2s) must be between 3s and 5m0s"}},
		{"lease duration above 300s", map[string]string{AnnotationLeaseDuration: "301s"},
			[]string{AnnotationLeaseDuration, "lease-duration (5m1s) must be between 3s and 5m0s"}},
		{"retry period below 250ms", map[string]string{AnnotationRetryPeriod: "100ms"},
			[]string{AnnotationRetryPeriod, "retry-period (100ms) must be at least 250ms"}},
		{"renew deadline below 1s", map[string]string{AnnotationLeaseDuration: "3s", AnnotationRenewDeadline: "900ms", AnnotationRetryPeriod: "500ms"},
			[]string{AnnotationRenewDeadline, "renew-deadline (900ms) must be at least 1s"}},
		{"port zero", map[string]string{AnnotationPort: "0"},
			[]string{AnnotationPort, `"0"`, "1 to 65535"}},
		{"port too high", map[string]string{AnnotationPort: "65536"},
			[]string{AnnotationPort, `"65536"`, "1 to 65535"}},
		{"port not a number", map[string]string{AnnotationPort: "http"},
			[]string{AnnotationPort, `"http"`}},
		{"port used by the application", map[string]string{AnnotationPort: "8080"},
			[]string{AnnotationPort, `"8080"`, `container "app"`}},
		{"traffic unknown", map[string]string{AnnotationTraffic: "dns"},
			[]string{AnnotationTraffic, `"dns"`, `"label" or "readiness"`}},
		{"image empty", map[string]string{AnnotationImage: ""},
			[]string{AnnotationImage, `""`, "image reference"}},
		{"image with a space", map[string]string{AnnotationImage: "a b"},
			[]string{AnnotationImage, `"a b"`}},
		{"cpu request garbage", map[string]string{AnnotationCPURequest: "lots"},
			[]string{AnnotationCPURequest, `"lots"`, "quantity"}},
		{"memory request negative", map[string]string{AnnotationMemoryRequest: "-1Mi"},
			[]string{AnnotationMemoryRequest, `"-1Mi"`, "positive"}},
		{"memory limit below request", map[string]string{AnnotationMemoryLimit: "16Mi", AnnotationMemoryRequest: "32Mi"},
			[]string{AnnotationMemoryLimit, "16Mi is below memory request 32Mi"}},
		{"two bad values reported together", map[string]string{AnnotationPort: "x", AnnotationTraffic: "y"},
			[]string{AnnotationPort, AnnotationTraffic}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := deploymentPod(tt.annotations)
			out, changed, err := Mutate(pod, testConfig(), false)
			if err == nil {
				t.Fatalf("Mutate accepted %v", tt.annotations)
			}
			if changed || out != pod {
				t.Errorf("a refused pod must come back unchanged")
			}
			for _, want := range tt.wantAll {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestLeaseNameFromOwner(t *testing.T) {
	tests := []struct {
		name  string
		kind  string
		owner string
		hash  string
		want  string
	}{
		{"deployment replica", "ReplicaSet", "web-6b7c9d", "6b7c9d", "web"},
		{"deployment with dashes", "ReplicaSet", "my-web-app-6b7c9d", "6b7c9d", "my-web-app"},
		{"replicaset not from a deployment", "ReplicaSet", "worker", "", "worker"},
		{"hash label that is not the suffix", "ReplicaSet", "worker", "abc", "worker"},
		{"statefulset", "StatefulSet", "queue", "", "queue"},
		{"job", "Job", "nightly", "", "nightly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
				Labels:          map[string]string{},
				OwnerReferences: []metav1.OwnerReference{{Kind: tt.kind, Name: tt.owner, Controller: ptrTo(true)}},
			}}
			if tt.hash != "" {
				pod.Labels["pod-template-hash"] = tt.hash
			}
			got, err := leaseNameFromOwner(pod)
			if err != nil || got != tt.want {
				t.Errorf("leaseNameFromOwner = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestEnforcedNamespace(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		owned       bool
		wantChanged bool
		wantErr     string
	}{
		{"deployment replica without annotation takes part", nil, true, true, ""},
		{"deployment replica opting out is refused", map[string]string{AnnotationEnabled: "false"}, true, false, "namespace policy leader-election/enforce"},
		{"bare pod without annotation is left alone", nil, false, false, ""},
		{"bare pod opting in with a lease name takes part", map[string]string{AnnotationEnabled: "true", AnnotationLeaseName: "x"}, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := deploymentPod(nil)
			pod.Annotations = tt.annotations
			if !tt.owned {
				pod.OwnerReferences = nil
			}
			_, changed, err := Mutate(pod, testConfig(), true)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || changed != tt.wantChanged {
				t.Errorf("changed = %v, err = %v; want changed = %v", changed, err, tt.wantChanged)
			}
		})
	}
}

func TestReservedContainerName(t *testing.T) {
	pod := deploymentPod(nil)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ContainerName, Image: "x"})
	if _, _, err := Mutate(pod, testConfig(), false); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("err = %v, want a refusal naming the reserved container name", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig()
	if err := good.Validate(); err != nil {
		t.Fatalf("default config refused: %v", err)
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no image", func(c *Config) { c.Image = "" }, "image"},
		{"unknown sidecar mode", func(c *Config) { c.Sidecar = "ambient" }, "sidecar mode"},
		{"renew >= lease", func(c *Config) { c.RenewDeadline = c.LeaseDuration }, "lease-duration"},
		{"port out of range", func(c *Config) { c.Port = 0 }, "port"},
		{"unknown traffic", func(c *Config) { c.Traffic = "x" }, "traffic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.modify(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}
