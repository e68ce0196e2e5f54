package webhook

import (
	"context"
	"fmt"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/pkg/leaderlabel"
)

// eventsController names the webhook in the Events it records (a qualified name, as the API requires).
const eventsController = "leader-election/webhook"

// Options configure the webhook server (cmd/webhook's flags).
type Options struct {
	// Inject is the injection configuration; Inject.Sidecar is ignored unless SidecarMode is "native" or "container".
	Inject inject.Config
	// SidecarMode is "auto" (read the API server's version once at start), "native" or "container".
	SidecarMode string
	// ClusterRole is the elector ClusterRole the webhook binds ServiceAccounts to.
	ClusterRole string
	// Port and CertDir serve the admission endpoints over TLS; the certificate is reloaded when its files change.
	Port    int
	CertDir string
	// MetricsAddress and HealthAddress serve Prometheus metrics and /healthz, /readyz ("0" disables).
	MetricsAddress, HealthAddress string
	// PprofAddress serves Go's /debug/pprof endpoints, for profiling ("" or "0" disables; the default).
	PprofAddress string
	// GracefulShutdown bounds how long in-flight requests may take after SIGTERM.
	GracefulShutdown time.Duration
	// ExcludedNamespaces are the namespaces the MutatingWebhookConfiguration keeps away from the webhook; a request
	// for one of them (a forged one, sent straight to the port) is refused, and nothing is bound there.
	ExcludedNamespaces []string
	// Admission serves the admission endpoints (webhook mode). False in admission mode "policy", where the API
	// server's MutatingAdmissionPolicies inject: no TLS server, no certificate, only the controllers.
	Admission bool
	// BindWorkloads binds the ServiceAccounts of opted-in Deployments and StatefulSets before their pods exist
	// (WorkloadBinder); admission mode "policy" needs it, since no admission call precedes a pod's elector.
	BindWorkloads bool
}

// Run serves the webhook until ctx is done.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	mode := inject.SidecarMode("")
	if opts.Admission {
		var err error
		if mode, err = resolveSidecarMode(cfg, opts.SidecarMode); err != nil {
			return err
		}
		opts.Inject.Sidecar = mode
		if err := opts.Inject.Validate(); err != nil {
			return fmt.Errorf("injection configuration: %w", err)
		}
	}
	ctrl.Log.Info("starting", "version", opts.Inject.Version, "admission", opts.Admission, "bindWorkloads", opts.BindWorkloads,
		"sidecar", mode, "image", opts.Inject.Image)
	// client-go's default of 20 requests/s, shared by admission's bindings and the label controllers' fresh reads,
	// delays label moves by hundreds of milliseconds after a burst of failovers (measured); the API server's own
	// priority and fairness remains the real limit.
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 100, 200
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	mgrOpts := ctrl.Options{
		Scheme: scheme,
		// No leader election: every replica runs the leader-label controller side by side (its writes are
		// guarded, see pkg/leaderlabel), so a replica that dies during a failover costs nothing.
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsAddress},
		HealthProbeBindAddress:  opts.HealthAddress,
		PprofBindAddress:        opts.PprofAddress,
		GracefulShutdownTimeout: &opts.GracefulShutdown,
		Cache:                   cacheOptions(),
	}
	if opts.Admission {
		mgrOpts.WebhookServer = crwebhook.NewServer(crwebhook.Options{Port: opts.Port, CertDir: opts.CertDir})
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	// Admission reads ServiceAccounts, RoleBindings and Roles from the cache. Asking for their informers now, before
	// the manager starts, makes the cache start and sync them with the others, and the readiness check below
	// wait for them; asked for lazily, they would be listed inside the first admission request, within the
	// API server's timeout, after the webhook reported ready.
	for _, obj := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.RoleBinding{}, &rbacv1.Role{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("preparing the %T cache: %w", obj, err)
		}
	}

	binder := &binding.Binder{Reader: mgr.GetCache(), Live: mgr.GetAPIReader(), Writer: mgr.GetClient(), ClusterRole: opts.ClusterRole}
	events := mgr.GetEventRecorder(eventsController)
	excluded := NewNamespaceSet(opts.ExcludedNamespaces)
	if opts.Admission {
		if err := serveAdmission(mgr, opts, binder, events, excluded); err != nil {
			return err
		}
	}

	if err := (&PodBinder{Reader: mgr.GetCache(), Binder: binder, Excluded: excluded}).SetupWithManager(mgr); err != nil {
		return err
	}
	if opts.BindWorkloads {
		if err := (&WorkloadBinder{Reader: mgr.GetCache(), Binder: binder, Excluded: excluded}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	if err := (&leaderlabel.Reconciler{Reader: mgr.GetCache(), Live: mgr.GetAPIReader(), Writer: mgr.GetClient(), Events: events}).SetupWithManager(mgr); err != nil {
		return err
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the TLS server listens (webhook mode) and every cache has synced (ServiceAccounts, RoleBindings,
	// member pods, Leases): before that, a bind would wait for the cache inside an admission request.
	if opts.Admission {
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		// Answer at once instead of holding the probe until the caches sync (a client without a timeout would
		// wait for ever); a synced cache answers on the first look.
		ctx, cancel := context.WithTimeout(req.Context(), 300*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return fmt.Errorf("caches of ServiceAccounts, RoleBindings, member pods and Leases not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// serveAdmission registers the admission endpoints on the manager's TLS server, with their metrics and Events.
func serveAdmission(mgr ctrl.Manager, opts Options, binder *binding.Binder, events EventRecorder, excluded NamespaceSet) error {
	observer, err := NewObserver(ctrlmetrics.Registry, events)
	if err != nil {
		return fmt.Errorf("registering the admission metrics: %w", err)
	}
	if err := ctrlmetrics.Registry.Register(newCertExpiry(opts.CertDir)); err != nil {
		return fmt.Errorf("registering the certificate metric: %w", err)
	}
	if err := mgr.Add(observer); err != nil {
		return err
	}
	server := mgr.GetWebhookServer()
	server.Register(PathOptIn, &crwebhook.Admission{Handler: observer.Observe(PathOptIn, &PodInjector{Config: opts.Inject, Binder: binder, Excluded: excluded})})
	server.Register(PathEnforced, &crwebhook.Admission{Handler: observer.Observe(PathEnforced, &PodInjector{Config: opts.Inject, Enforced: true, Binder: binder, Excluded: excluded})})
	return nil
}

// cacheOptions keep the caches to what admission and the leader-label controller read, and no bigger.
func cacheOptions() cache.Options {
	// Node heartbeats are Leases too, one per node renewed every 10 seconds: none is ever an election's, so
	// neither they nor anything else in kube-node-lease enters any cache.
	notNodeLeases := fields.OneTermNotEqualSelector("metadata.namespace", corev1.NamespaceNodeLease)
	return cache.Options{
		DefaultFieldSelector: notNodeLeases,
		ByObject: map[client.Object]cache.ByObject{
			// Only the RoleBindings and Roles this webhook manages, not every one in the cluster.
			&rbacv1.RoleBinding{}: {Label: labels.SelectorFromSet(binding.Labels), Field: notNodeLeases},
			&rbacv1.Role{}:        {Label: labels.SelectorFromSet(binding.Labels), Field: notNodeLeases},
			// ServiceAccounts are read for their UID only; drop the rest to keep memory flat.
			&corev1.ServiceAccount{}: {Transform: keepMetadataOnly, Field: notNodeLeases},
			// Only injected pods, and only their metadata and ServiceAccount: the leader-label controller and
			// PodBinder need nothing else.
			&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{contract.LabelMember: "true"}), Transform: keepMetadataOnly,
				Field: notNodeLeases},
			&coordinationv1.Lease{}: {Transform: keepMetadataOnly, Field: notNodeLeases},
			// WorkloadBinder (--bind-workloads) reads a workload's pod-template annotations and ServiceAccount,
			// and a namespace's labels; nothing else is kept.
			&appsv1.Deployment{}:  {Transform: keepMetadataOnly, Field: notNodeLeases},
			&appsv1.StatefulSet{}: {Transform: keepMetadataOnly, Field: notNodeLeases},
			// Namespaces are cluster-scoped: the namespace field selector above does not apply to them.
			&corev1.Namespace{}: {Transform: keepMetadataOnly, Field: fields.Everything()},
		},
	}
}

// resolveSidecarMode turns "auto" into native or container from the API server's version, read once at start.
// The flag exists because kubelets may be older than the API server: a platform that still runs < 1.29
// kubelets sets "container" explicitly.
func resolveSidecarMode(cfg *rest.Config, flag string) (inject.SidecarMode, error) {
	switch flag {
	case string(inject.SidecarNative), string(inject.SidecarContainer):
		return inject.SidecarMode(flag), nil
	case "auto":
	default:
		return "", fmt.Errorf("--sidecar-mode %q: want auto, native or container", flag)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", err
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return "", fmt.Errorf("--sidecar-mode auto: reading the API server's version: %w", err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return "", fmt.Errorf("--sidecar-mode auto: API server version %q: %w", info.GitVersion, err)
	}
	if v.AtLeast(version.MajorMinor(1, 29)) {
		return inject.SidecarNative, nil
	}
	return inject.SidecarContainer, nil
}

// templateOnly is what WorkloadBinder reads of a pod template: its annotations and ServiceAccount.
func templateOnly(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: t.Annotations},
		Spec:       corev1.PodSpec{ServiceAccountName: t.Spec.ServiceAccountName},
	}
}

// keepMetadataOnly drops from cached objects what no reader here uses, to keep the webhook's memory flat.
func keepMetadataOnly(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		o.Secrets, o.ImagePullSecrets, o.ManagedFields = nil, nil, nil
	case *corev1.Pod:
		o.Spec, o.Status, o.ManagedFields = corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName}, corev1.PodStatus{}, nil
	case *coordinationv1.Lease:
		o.ManagedFields = nil
	case *appsv1.Deployment:
		o.Spec, o.Status, o.ManagedFields = appsv1.DeploymentSpec{Template: templateOnly(o.Spec.Template)}, appsv1.DeploymentStatus{}, nil
	case *appsv1.StatefulSet:
		o.Spec, o.Status, o.ManagedFields = appsv1.StatefulSetSpec{Template: templateOnly(o.Spec.Template)}, appsv1.StatefulSetStatus{}, nil
	case *corev1.Namespace:
		o.Spec, o.Status, o.ManagedFields = corev1.NamespaceSpec{}, corev1.NamespaceStatus{}, nil
	}
	return obj, nil
}
