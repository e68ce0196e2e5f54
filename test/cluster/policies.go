package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/leader-election/leader-election/test/controlplane"
)

// PodLabelsPolicy is the policy that refuses pods created with leader-election/role; WaitPoliciesEnforced probes it.
const PodLabelsPolicy = "leader-election-pod-labels"

// InstallPolicies creates every ValidatingAdmissionPolicy and binding in config/policies (the webhook is
// recognised as WebhookUser, the name config/ gives it in leader-election-system) and waits until the API
// server enforces them.
func InstallPolicies(ctx context.Context, cs kubernetes.Interface) error {
	files, err := filepath.Glob(filepath.Join(controlplane.RepoRoot(), "config", "policies", "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			switch o := obj.(type) {
			case *admissionregistrationv1.ValidatingAdmissionPolicy:
				_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
			case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
				_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{})
			default:
				return fmt.Errorf("%s: unexpected %T", f, obj)
			}
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	return WaitPoliciesEnforced(ctx, cs)
}

// WaitPoliciesEnforced waits until a dry-run pod carrying the role label is refused by PodLabelsPolicy: a policy
// takes effect once the API server's informer has seen it and its binding.
func WaitPoliciesEnforced(ctx context.Context, cs kubernetes.Interface) error {
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-probe", Labels: map[string]string{"leader-election/role": "leader"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1.0"}}},
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods("default").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), PodLabelsPolicy), nil
	})
	if err != nil {
		return fmt.Errorf("the admission policies were not enforced within 30s")
	}
	return nil
}
