package webhook

import (
	"context"
	"fmt"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	// for one of them (a forged one, sent straight to the port) is refused.
	ExcludedNamespaces []string
}

// Run serves the webhook until ctx is done.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	mode, err := resolveSidecarMode(cfg, opts.SidecarMode)
	if err != nil {
		return err
	}
	opts.Inject.Sidecar = mode
	if err := opts.Inject.Validate(); err != nil {
		return fmt.Errorf("injection configuration: %w", err)
	}
	ctrl.Log.Info("starting", "version", opts.Inject.Version, "sidecar", mode, "image", opts.Inject.Image)
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
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		// No leader election: every replica runs the leader-label controller side by side (its writes are
		// guarded, see pkg/leaderlabel), so a replica that dies during a failover costs nothing.
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsAddress},
		HealthProbeBindAddress:  opts.HealthAddress,
		PprofBindAddress:        opts.PprofAddress,
		GracefulShutdownTimeout: &opts.GracefulShutdown,
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Port:    opts.Port,
			CertDir: opts.CertDir,
		}),
		Cache: cacheOptions(),
	})
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
	server := mgr.GetWebhookServer()
	events := mgr.GetEventRecorder(eventsController)
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
	excluded := NewNamespaceSet(opts.ExcludedNamespaces)
	server.Register(PathOptIn, &crwebhook.Admission{Handler: observer.Observe(PathOptIn, &PodInjector{Config: opts.Inject, Binder: binder, Excluded: excluded})})
	server.Register(PathEnforced, &crwebhook.Admission{Handler: observer.Observe(PathEnforced, &PodInjector{Config: opts.Inject, Enforced: true, Binder: binder, Excluded: excluded})})

	if err := (&PodBinder{Reader: mgr.GetCache(), Binder: binder, Excluded: excluded}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&leaderlabel.Reconciler{Reader: mgr.GetCache(), Live: mgr.GetAPIReader(), Writer: mgr.GetClient(), Events: events}).SetupWithManager(mgr); err != nil {
		return err
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the TLS server listens and every cache has synced (ServiceAccounts, RoleBindings, member pods,
	// Leases): before that, a bind would wait for the cache inside an admission request.
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return err
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
			&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{inject.LabelMember: "true"}), Transform: keepMetadataOnly,
				Field: notNodeLeases},
			&coordinationv1.Lease{}: {Transform: keepMetadataOnly, Field: notNodeLeases},
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

// keepMetadataOnly drops from cached objects what no reader here uses, to keep the webhook's memory flat.
func keepMetadataOnly(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		o.Secrets, o.ImagePullSecrets, o.ManagedFields = nil, nil, nil
	case *corev1.Pod:
		o.Spec, o.Status, o.ManagedFields = corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName}, corev1.PodStatus{}, nil
	case *coordinationv1.Lease:
		o.ManagedFields = nil
	}
	return obj, nil
}
