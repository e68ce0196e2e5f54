// Package webhook is the admission handler: decode the pod, call pkg/inject, bind the ServiceAccount, answer
// with a JSON patch that holds only the injection, so that fields this build does not know survive.
package webhook

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"

	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/pkg/podpatch"
)

// Paths the webhooks are served on (config/webhook/manifests.yaml).
const (
	PathOptIn    = "/mutate-pod"
	PathEnforced = "/mutate-pod-enforced"
)

// Binder says, writing nothing, whether a ServiceAccount can be given the elector's permissions in a namespace.
// The grants themselves are made for stored pods only (PodBinder): a review may be forged by anyone who reaches
// the port, and a forged one must grant nothing.
type Binder interface {
	Check(ctx context.Context, namespace, serviceAccount string) error
}

// PodInjector is the admission handler for one webhook path.
type PodInjector struct {
	Config inject.Config
	// Enforced is true on the path for namespaces labelled leader-election/enforce="true".
	Enforced bool
	Binder   Binder
	// Excluded are the namespaces the installation keeps away from the webhook (kube-system, its own, ...).
	Excluded NamespaceSet
}

// NamespaceSet is a set of namespace names.
type NamespaceSet map[string]bool

// NewNamespaceSet returns the set of the given names.
func NewNamespaceSet(names []string) NamespaceSet {
	set := NamespaceSet{}
	for _, n := range names {
		set[n] = true
	}
	return set
}

// Handle injects the elector into a pod being created. Anything but a Pod CREATE is allowed unchanged.
func (p *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return admission.Allowed("leader-election mutates only pod creation")
	}
	// The MutatingWebhookConfiguration never sends these; a request for one was sent by someone else, and must
	// not make the webhook bind anything there (kube-system above all).
	if p.Excluded[req.Namespace] {
		return admission.Denied(fmt.Sprintf("namespace %s is excluded from leader-election by the installation (--excluded-namespaces); the webhook does not serve it", req.Namespace))
	}
	// The Kind is checked above, so the object is decoded as a Pod directly, with the JSON decoder the API
	// machinery's serializer uses (case-sensitive, integers kept as integers), without its second pass to read
	// apiVersion and kind again.
	pod := &corev1.Pod{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	out, changed, err := inject.Mutate(pod, p.Config, p.Enforced)
	if err != nil {
		return admission.Denied(err.Error())
	}
	if !changed {
		return admission.Allowed("the pod does not take part in leader election, or already has its elector")
	}
	// Only reads: PodBinder binds once the API server has stored the pod (and never for a dry run).
	if err := p.Binder.Check(ctx, req.Namespace, out.Spec.ServiceAccountName); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("binding the elector's permissions: %w", err))
	}
	// The patch holds only what Mutate added, so a field of a newer API server that this build's types do not
	// know is named by no operation and survives in the stored pod.
	ops, err := podpatch.Build(pod, out)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("building the patch: %w", err))
	}
	return admission.Patched("", ops...)
}
