package inject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
)

// TestPolicyMarkAttacks: the policies' mark grants nothing. A pod carrying <version>/policy is accepted only when
// its elector, the elector's volumes and the webhook's annotations are exactly what the webhook would inject (the
// election timings compared as durations, the resources as a later webhook may set them), and a pod whose elector
// any other way differs is refused.
func TestPolicyMarkAttacks(t *testing.T) {
	cfg := testConfig()
	genuine := readPod(t, "testdata/policy-injected.in.yaml")
	elector := func(p *corev1.Pod) *corev1.Container {
		c, _ := containerNamed(p, contract.ContainerName)
		return c
	}
	setEnv := func(name, value string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			c := elector(p)
			for i := range c.Env {
				if c.Env[i].Name == name {
					c.Env[i].Value = value
				}
			}
		}
	}
	for _, tc := range []struct {
		name     string
		tamper   func(*corev1.Pod)
		accepted bool
	}{
		{"untouched", func(*corev1.Pod) {}, true},
		{"resources resized (a VPA)", func(p *corev1.Pod) {
			elector(p).Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")
		}, true},
		{"another image", func(p *corev1.Pod) { elector(p).Image = "evil/elector:v0.1.0" }, false},
		{"a command", func(p *corev1.Pod) {
			elector(p).Command = []string{"/bin/sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"}
		}, false},
		{"an argument", func(p *corev1.Pod) { elector(p).Args = []string{"--lease-name=other"} }, false},
		{"an env var more", func(p *corev1.Pod) {
			elector(p).Env = append(elector(p).Env, corev1.EnvVar{Name: "KUBECONFIG", Value: "/tmp/k"})
		}, false},
		{"a timing twice", func(p *corev1.Pod) {
			elector(p).Env = append(elector(p).Env, corev1.EnvVar{Name: contract.EnvRetryPeriod, Value: "2s"})
		}, false},
		{"a timing from a field", func(p *corev1.Pod) {
			c := elector(p)
			for i := range c.Env {
				if c.Env[i].Name == contract.EnvRetryPeriod {
					c.Env[i] = corev1.EnvVar{Name: contract.EnvRetryPeriod, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['x']"}}}
				}
			}
		}, false},
		{"envFrom", func(p *corev1.Pod) {
			elector(p).EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}}
		}, false},
		{"privileged", func(p *corev1.Pod) { elector(p).SecurityContext.Privileged = ptr.To(true) }, false},
		{"root", func(p *corev1.Pod) { elector(p).SecurityContext.RunAsUser = ptr.To[int64](0) }, false},
		{"a hostPath mount", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
			elector(p).VolumeMounts = append(elector(p).VolumeMounts, corev1.VolumeMount{Name: "host", MountPath: "/host"})
		}, false},
		{"a token for another audience", func(p *corev1.Pod) {
			p.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken.Audience = "vault"
		}, false},
		{"a token that lives longer", func(p *corev1.Pod) {
			p.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken.ExpirationSeconds = ptr.To[int64](86400 * 365)
		}, false},
		{"the labels volume shows annotations", func(p *corev1.Pod) {
			p.Spec.Volumes[1].DownwardAPI.Items[0].FieldRef.FieldPath = "metadata.annotations"
		}, false},
		{"a startupProbe", func(p *corev1.Pod) {
			elector(p).StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		}, false},
		{"a lifecycle hook", func(p *corev1.Pod) {
			elector(p).Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh"}}}}
		}, false},
		{"stdin", func(p *corev1.Pod) { elector(p).Stdin = true }, false},
		{"a working directory", func(p *corev1.Pod) { elector(p).WorkingDir = "/tmp" }, false},
		{"the handover off", setEnv(contract.EnvHandover, "false"), false},
		{"an app check added", func(p *corev1.Pod) {
			elector(p).Env = append(elector(p).Env, corev1.EnvVar{Name: contract.EnvAppCheck, Value: `{"tcpSocket":{"port":5432}}`})
		}, false},
		{"an app check added with its gate", func(p *corev1.Pod) {
			elector(p).Env = append(elector(p).Env, corev1.EnvVar{Name: contract.EnvAppCheck, Value: `{"tcpSocket":{"port":5432}}`})
			p.Annotations[contract.AnnotationHealthGate] = "gated: readinessProbe of container \"app\""
		}, false},
		{"member label missing", func(p *corev1.Pod) { delete(p.Labels, contract.LabelMember) }, false},
		{"another lease name annotation", func(p *corev1.Pod) { p.Annotations[contract.AnnotationLeaseName] = "other" }, false},
		{"a second elector among the containers", func(p *corev1.Pod) {
			second := elector(p).DeepCopy()
			second.RestartPolicy = nil
			second.Image = "evil/elector:v1"
			p.Spec.Containers = append(p.Spec.Containers, *second)
		}, false},
		{"the elector moved to the regular containers", func(p *corev1.Pod) {
			c := *elector(p)
			c.RestartPolicy = nil
			p.Spec.InitContainers = nil
			p.Spec.Containers = append(p.Spec.Containers, c)
		}, false},
		// Durations: any spelling Go parses to the same duration is the same setting to the elector, which
		// parses its env with time.ParseDuration; every other value is refused.
		{"retry 2000ms", setEnv(contract.EnvRetryPeriod, "2000ms"), true},
		{"retry +2s", setEnv(contract.EnvRetryPeriod, "+2s"), true},
		{"retry 0h0m2s", setEnv(contract.EnvRetryPeriod, "0h0m2s"), true},
		{"retry 2.0000000001s (truncated to 2s by Go)", setEnv(contract.EnvRetryPeriod, "2.0000000001s"), true},
		{"retry -2s", setEnv(contract.EnvRetryPeriod, "-2s"), false},
		{"retry 2", setEnv(contract.EnvRetryPeriod, "2"), false},
		{"retry fullwidth digit", setEnv(contract.EnvRetryPeriod, "\uff12s"), false},
		{"retry arabic-indic digit", setEnv(contract.EnvRetryPeriod, "\u0662s"), false},
		{"retry with a space", setEnv(contract.EnvRetryPeriod, " 2s"), false},
		{"retry overflow", setEnv(contract.EnvRetryPeriod, "9223372036854775808ns"), false},
		{"retry overflow that wraps", setEnv(contract.EnvRetryPeriod, "2562048h"), false},
		{"retry 2000000us", setEnv(contract.EnvRetryPeriod, "2000000us"), true},
		{"retry with a fraction longer than nanoseconds", setEnv(contract.EnvRetryPeriod, "2.000000000000000000000000000001s"), true},
		{"retry empty", setEnv(contract.EnvRetryPeriod, ""), false},
		{"lease 1h0m0.5s", setEnv(contract.EnvLeaseDuration, "1h0m0.5s"), false},
		{"lease 15000ms", setEnv(contract.EnvLeaseDuration, "15000ms"), true},
		{"renew 0.5s for 10s", setEnv(contract.EnvRenewDeadline, "0.5s"), false},
		{"another var spelled as a duration", setEnv("ELECTOR_PORT", "+8642"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := genuine.DeepCopy()
			tc.tamper(pod)
			_, _, err := Mutate(pod, cfg, false)
			if tc.accepted && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.accepted && err == nil {
				t.Fatal("accepted, want refused")
			}
			if _, _, err2 := Mutate(pod, cfg, true); (err2 == nil) != (err == nil) {
				t.Fatalf("in an enforcing namespace: %v; elsewhere: %v", err2, err)
			}
		})
	}
}
