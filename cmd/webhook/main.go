// Command webhook is leader-election's manager: the mutating admission webhook that injects the elector into
// opted-in pods (admission mode "webhook"), the controller that binds their ServiceAccounts to the elector's
// permissions, and the leader-label controller. With --admission=false (admission mode "policy", where the API
// server's MutatingAdmissionPolicies inject) it serves no admission endpoints and needs no certificate; it keeps
// the name webhook in both modes, as do its Deployment and ServiceAccount, which the policies recognise it by.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/leader-election/leader-election/pkg/binding"
	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/pkg/version"
	"github.com/leader-election/leader-election/pkg/webhook"
)

func main() {
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	opts, err := parseFlags(fs, os.Args[1:])
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook:", err)
		os.Exit(2)
	}
	cfg, err := restConfig(opts.Kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook:", err)
		os.Exit(1)
	}
	if err := webhook.Run(ctrl.SetupSignalHandler(), cfg, opts.Options); err != nil {
		ctrl.Log.Error(err, "webhook stopped")
		os.Exit(1)
	}
}

// flags is the command line: the server's options and where to find the API server.
type flags struct {
	webhook.Options
	Kubeconfig string
}

// restConfig uses --kubeconfig when given, else KUBECONFIG or the in-cluster configuration.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

// parseFlags reads the command line; every default is the one the README documents.
func parseFlags(fs *flag.FlagSet, args []string) (flags, error) {
	def := inject.DefaultConfig(version.Version, "leader-election/elector:"+version.Version)
	opts := flags{Options: webhook.Options{Inject: def, ExcludedNamespaces: []string{"kube-system"}}}
	in := &opts.Inject
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file, for running outside a cluster (default: KUBECONFIG, then in-cluster)")
	fs.BoolVar(&opts.Admission, "admission", true, "serve the admission endpoints (admission mode webhook); false for admission mode policy, where MutatingAdmissionPolicies inject and only the controllers run (the elector's defaults are still checked, as the policies' parameters are the same values)")
	fs.BoolVar(&opts.BindWorkloads, "bind-workloads", false, "bind the ServiceAccounts of opted-in Deployments and StatefulSets before their pods exist (needs get/list/watch on them and on namespaces; admission mode policy turns it on)")
	fs.IntVar(&opts.Port, "port", 9443, "port the admission endpoints are served on (TLS)")
	fs.StringVar(&opts.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key; reloaded when the files change")
	fs.StringVar(&opts.MetricsAddress, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&opts.HealthAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&opts.PprofAddress, "pprof-bind-address", "", "address of Go's /debug/pprof endpoints, for profiling (default: off)")
	fs.DurationVar(&opts.GracefulShutdown, "graceful-shutdown-timeout", 15*time.Second, "how long in-flight requests may finish after SIGTERM")
	fs.Func("excluded-namespaces", "comma-separated namespaces the webhook refuses to serve: those the MutatingWebhookConfiguration excludes (default kube-system)", func(s string) error {
		opts.ExcludedNamespaces = nil
		for _, ns := range strings.Split(s, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				opts.ExcludedNamespaces = append(opts.ExcludedNamespaces, ns)
			}
		}
		return nil
	})
	fs.StringVar(&opts.ClusterRole, "elector-cluster-role", binding.DefaultClusterRole, "ClusterRole that pods' ServiceAccounts are bound to in their namespace")
	fs.StringVar(&opts.SidecarMode, "sidecar-mode", "auto", "auto (native when the API server is >= 1.29), native (init container with restartPolicy Always) or container (for kubelets < 1.29)")
	fs.StringVar(&in.Image, "elector-image", def.Image, "default elector image (annotation leader-election/image overrides)")
	fs.DurationVar(&in.LeaseDuration, "lease-duration", def.LeaseDuration, "default lease duration, whole seconds")
	fs.DurationVar(&in.RenewDeadline, "renew-deadline", def.RenewDeadline, "default renew deadline")
	fs.DurationVar(&in.RetryPeriod, "retry-period", def.RetryPeriod, "default retry period")
	port := fs.Int("elector-port", int(def.Port), "default HTTP port of the elector")
	fs.StringVar(&in.Traffic, "traffic", def.Traffic, "default traffic mode: label or readiness")
	quantity(fs, &in.CPURequest, "elector-cpu-request", "default CPU request of the elector")
	quantity(fs, &in.CPULimit, "elector-cpu-limit", "default CPU limit of the elector")
	quantity(fs, &in.MemoryRequest, "elector-memory-request", "default memory request of the elector")
	quantity(fs, &in.MemoryLimit, "elector-memory-limit", "default memory limit of the elector")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if *port < 1 || *port > 65535 {
		return opts, fmt.Errorf("--elector-port %d: want 1 to 65535", *port)
	}
	in.Port = int32(*port)
	in.Sidecar = inject.SidecarNative // replaced by --sidecar-mode when the server starts
	if err := in.Validate(); err != nil {
		return opts, fmt.Errorf("flags --elector-image, --lease-duration, --renew-deadline, --retry-period, --traffic, --elector-cpu-*, --elector-memory-*: %w", err)
	}
	return opts, nil
}

// quantity registers a flag holding a Kubernetes quantity such as 10m or 64Mi.
func quantity(fs *flag.FlagSet, dst *resource.Quantity, name, usage string) {
	fs.Func(name, fmt.Sprintf("%s (default %s)", usage, dst.String()), func(s string) error {
		q, err := resource.ParseQuantity(s)
		if err != nil {
			return fmt.Errorf("want a Kubernetes quantity such as 10m or 64Mi: %w", err)
		}
		*dst = q
		return nil
	})
}
