package inject

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/leader-election/leader-election/pkg/appcheck"
	"github.com/leader-election/leader-election/pkg/contract"
)

// recognise accepts a pod that already carries the elector only when it is this webhook's own injection: the pod
// without the elector (and the volumes only the elector mounts) is injected again, and the container, its
// volumes, and the annotations and label the webhook writes must all equal that fresh build. A look-alike (a
// copied leader-election/injected annotation beside a container merely named like the elector) is refused, so
// a namespace's enforce policy cannot be passed by imitation. Every field the API server defaults is set in the
// build, so the stored, defaulted pod of a reinvocation compares equal.
//
// The health check is the one setting taken from the stored elector rather than rebuilt: it comes from the
// application's readinessProbe, which a later webhook may rewrite (Istio points every probe at its agent), and the
// check of the first injection is still right. It proves nothing about who injected the container and grants
// nothing: any check it can hold, the pod's own readinessProbe could have asked for.
//
// The settings hash is the one thing a genuine injection may lack: admission mode "policy" writes
// <version>/PolicyInjectedSuffix instead, and its elector is compared all the same.
func recognise(pod *corev1.Pod, cfg Config) error {
	refuse := func(why string) error {
		return fmt.Errorf("the pod carries annotation %s=%q and a container named %q, but they are not what this webhook injects for this pod (%s); remove both and let the webhook inject the elector",
			contract.AnnotationInjected, pod.Annotations[contract.AnnotationInjected], contract.ContainerName, why)
	}
	base := withoutElector(pod)
	// The API server's validation refuses a name used twice, but only after admission: one elector is compared
	// below, so a second one (an init container and a regular container of the same name) is refused here.
	if n := len(pod.Spec.InitContainers) + len(pod.Spec.Containers) - len(base.Spec.InitContainers) - len(base.Spec.Containers); n > 1 {
		return refuse(fmt.Sprintf("%d containers are named %q", n, contract.ContainerName))
	}
	want, err := inject(base, cfg, storedHealth(pod))
	if err != nil {
		return refuse(err.Error())
	}
	got, gotNative := containerNamed(pod, contract.ContainerName)
	wanted, _ := containerNamed(want, contract.ContainerName)
	if gotNative != (cfg.Sidecar == SidecarNative) {
		return refuse("the container is in the wrong list for sidecar mode " + string(cfg.Sidecar))
	}
	// Resources are the one field a later webhook may change (the VerticalPodAutoscaler's admission controller
	// sizes every container it recommends for, and may change the application's QoS and with it the elector's
	// computed resources). They prove nothing about who injected the container: an imitation with our exact
	// image, env, probes and mounts is the elector, whatever it requests.
	resized := *got
	resized.Resources = wanted.Resources
	// A pod the MutatingAdmissionPolicies of admission mode "policy" injected carries <version>/policy where this
	// webhook writes its settings hash (CEL has no hash function). Both modes run side by side while `helm
	// upgrade` switches between them, and the policies run first: their injection of this version is this
	// webhook's own in every field compared here (its election timings as durations), so it is accepted as it is,
	// never injected twice. The mark proves nothing: a look-alike or tampered elector under it is refused like
	// any other.
	byPolicy := pod.Annotations[contract.AnnotationInjected] == cfg.Version+"/"+contract.PolicyInjectedSuffix
	if byPolicy {
		resized.Env = withDurationsOf(got.Env, wanted.Env)
	}
	if fields := differingFields(&resized, wanted); len(fields) > 0 {
		return refuse("its " + strings.Join(fields, ", ") + " differ")
	}
	for _, m := range wanted.VolumeMounts {
		if !equality.Semantic.DeepEqual(volumeNamed(pod, m.Name), volumeNamed(want, m.Name)) {
			return refuse(fmt.Sprintf("volume %q differs", m.Name))
		}
	}
	if byPolicy {
		want.Annotations[contract.AnnotationInjected] = pod.Annotations[contract.AnnotationInjected]
	}
	for _, key := range []string{contract.AnnotationInjected, contract.AnnotationLeaseName, contract.AnnotationMesh, contract.AnnotationHealthGate} {
		if pod.Annotations[key] != want.Annotations[key] {
			return refuse(fmt.Sprintf("annotation %s is %q, want %q", key, pod.Annotations[key], want.Annotations[key]))
		}
	}
	if pod.Labels[contract.LabelMember] != "true" {
		return refuse(fmt.Sprintf("label %s is missing", contract.LabelMember))
	}
	return nil
}

// withDurationsOf returns env with each election timing written as want writes it where both are the same
// duration. The policies write a duration finer than a millisecond as annotated (250500us) where Go prints 250.5ms
// (CEL gives durations to the millisecond only); the elector parses both to the same duration.
func withDurationsOf(env, want []corev1.EnvVar) []corev1.EnvVar {
	out := slices.Clone(env)
	for i, e := range out {
		if e.Name != contract.EnvLeaseDuration && e.Name != contract.EnvRenewDeadline && e.Name != contract.EnvRetryPeriod {
			continue
		}
		for _, w := range want {
			if w.Name != e.Name {
				continue
			}
			have, err1 := time.ParseDuration(e.Value)
			same, err2 := time.ParseDuration(w.Value)
			if err1 == nil && err2 == nil && have == same {
				out[i].Value = w.Value
			}
		}
	}
	return out
}

// withoutElector returns a copy of the pod without the elector container and the volumes no other container
// mounts: the pod as the webhook saw it before injecting.
func withoutElector(pod *corev1.Pod) *corev1.Pod {
	base := pod.DeepCopy()
	mine := map[string]bool{}
	keep := func(list []corev1.Container) []corev1.Container {
		var kept []corev1.Container
		for _, c := range list {
			if c.Name == contract.ContainerName {
				for _, m := range c.VolumeMounts {
					mine[m.Name] = true
				}
				continue
			}
			kept = append(kept, c)
		}
		return kept
	}
	base.Spec.InitContainers = keep(base.Spec.InitContainers)
	base.Spec.Containers = keep(base.Spec.Containers)
	for _, list := range [][]corev1.Container{base.Spec.InitContainers, base.Spec.Containers} {
		for _, c := range list {
			for _, m := range c.VolumeMounts {
				delete(mine, m.Name)
			}
		}
	}
	for _, c := range base.Spec.EphemeralContainers {
		for _, m := range c.VolumeMounts {
			delete(mine, m.Name)
		}
	}
	var volumes []corev1.Volume
	for _, v := range base.Spec.Volumes {
		if !mine[v.Name] {
			volumes = append(volumes, v)
		}
	}
	base.Spec.Volumes = volumes
	return base
}

// differingFields names the fields in which two containers differ, for the refusal message.
func differingFields(got, want *corev1.Container) []string {
	if equality.Semantic.DeepEqual(got, want) {
		return nil
	}
	fields := []struct {
		name string
		a, b any
	}{
		{"image", got.Image, want.Image},
		{"command", got.Command, want.Command},
		{"args", got.Args, want.Args},
		{"env", got.Env, want.Env},
		{"ports", got.Ports, want.Ports},
		{"resources", got.Resources, want.Resources},
		{"securityContext", got.SecurityContext, want.SecurityContext},
		{"volumeMounts", got.VolumeMounts, want.VolumeMounts},
		{"readinessProbe", got.ReadinessProbe, want.ReadinessProbe},
		{"livenessProbe", got.LivenessProbe, want.LivenessProbe},
		{"restartPolicy", got.RestartPolicy, want.RestartPolicy},
		{"imagePullPolicy", got.ImagePullPolicy, want.ImagePullPolicy},
		{"terminationMessagePath", got.TerminationMessagePath, want.TerminationMessagePath},
		{"terminationMessagePolicy", got.TerminationMessagePolicy, want.TerminationMessagePolicy},
	}
	var names []string
	for _, f := range fields {
		if !equality.Semantic.DeepEqual(f.a, f.b) {
			names = append(names, f.name)
		}
	}
	if len(names) == 0 {
		names = []string{"other fields"}
	}
	return names
}

// volumeNamed returns the pod's volume with the given name, or nil.
func volumeNamed(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

// keptHealth is the health check an earlier injection of the pod resolved: ELECTOR_APP_CHECK ("" = not gated)
// and the health gate annotation.
type keptHealth struct {
	appCheck, gate string
}

// storedHealth reads the health check of the pod's elector and its health gate annotation.
func storedHealth(pod *corev1.Pod) *keptHealth {
	kept := &keptHealth{gate: pod.Annotations[contract.AnnotationHealthGate]}
	if c, _ := containerNamed(pod, contract.ContainerName); c != nil {
		for _, e := range c.Env {
			if e.Name == contract.EnvAppCheck {
				kept.appCheck = e.Value
			}
		}
	}
	return kept
}

// apply puts the kept check into s, refusing a check the elector would refuse and a gate annotation that does
// not say what the check does.
func (k *keptHealth) apply(s *Settings) []error {
	if k.appCheck != "" {
		if _, err := appcheck.Parse(k.appCheck); err != nil {
			return []error{fmt.Errorf("the elector's %s is not a check it can run: %w", contract.EnvAppCheck, err)}
		}
	}
	if (k.appCheck != "") != strings.HasPrefix(k.gate, gated) {
		return []error{fmt.Errorf("annotation %s is %q, which does not say what the elector's %s does", contract.AnnotationHealthGate, k.gate, contract.EnvAppCheck)}
	}
	s.AppCheck, s.HealthGate = k.appCheck, k.gate
	return nil
}
