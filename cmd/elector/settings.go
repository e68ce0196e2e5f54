package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leader-election/leader-election/pkg/appcheck"
	"github.com/leader-election/leader-election/pkg/elector"
)

// option is one setting: a flag, the environment variable it falls back to, and its default ("" = none).
type option struct {
	flag, env, def, usage string
}

// The options, in the order of README's contract table. A flag wins over its variable.
func options() []option {
	return []option{
		{"pod-name", "POD_NAME", "", "this replica's identity (downward API metadata.name); required"},
		{"pod-uid", "POD_UID", "", "this pod's UID (downward API metadata.uid), written to the Lease as leader-election/holder-uid to tell this pod from another of the same name; required"},
		{"namespace", "POD_NAMESPACE", "", "the Lease's namespace (downward API metadata.namespace); required"},
		{"lease-name", "LEASE_NAME", "", "the Lease the replicas compete for; required"},
		{"lease-duration", "LEASE_DURATION", elector.DefaultLeaseDuration.String(), "how long a Lease is valid after its last renewal (Go duration, > renew-deadline)"},
		{"renew-deadline", "RENEW_DEADLINE", elector.DefaultRenewDeadline.String(), "how long after its last renewal the leader stays ready and keeps trying to renew before it steps down (> retry-period, < lease-duration)"},
		{"retry-period", "RETRY_PERIOD", elector.DefaultRetryPeriod.String(), "how often the leader renews, and the pause between failed attempts (> 0, < renew-deadline)"},
		{"port", "ELECTOR_PORT", "8642", "the HTTP port (1-65535)"},
		{"control-socket", "ELECTOR_CONTROL_SOCKET", "@leader-election", "the Unix socket for POST /stepdown, reachable from inside the pod only (a leading @: Linux's abstract namespace, scoped to the pod's network namespace)"},
		{"bind-address", "ELECTOR_BIND_ADDRESS", "", "the address the HTTP server listens on (default: all addresses)"},
		{"readiness", "ELECTOR_READINESS", string(elector.ReadinessLeader), "leader: /readyz is 200 on the leader only; member: 200 on every replica following the Lease, 503 on a leader whose last renewal is older than the renew deadline"},
		{"pod-labels-file", "ELECTOR_POD_LABELS_FILE", "", "the pod's labels as a downward API file; in member readiness a replica labelled leader-election/role=leader that is not a fresh leader is unready (default: none)"},
		{"app-check", "ELECTOR_APP_CHECK", "", "the application's health check, JSON of a Kubernetes probe with a numeric port: httpGet, tcpSocket or grpc, with its timing (the webhook hands over the app's readinessProbe); leadership follows its verdict (default: not gated)"},
		{"pod-ip", "POD_IP", "", "this pod's IP (downward API status.podIP), where --app-check goes when it names no host, as the kubelet's probes do (default: 127.0.0.1)"},
		{"kubeconfig", "KUBECONFIG", "", "kubeconfig file, for running outside a pod (default: in-cluster configuration)"},
	}
}

// settings is the elector's configuration once flags and environment are resolved and checked.
type settings struct {
	config      elector.Config
	port        int
	bindAddress string
	// appCheck is the application's health check (nil: leadership is not health-gated); podIP is where a check
	// without a host goes ("" = 127.0.0.1).
	appCheck *corev1.Probe
	podIP    string
	// kubeconfig is the kubeconfig path or list ("" = in-cluster); kubeconfigSource names where it came from.
	kubeconfig, kubeconfigSource string
	// sources describe where each value came from, by flag name, for messages about them.
	sources map[string]string
}

// value is one resolved setting and where it came from, for messages that point at the right place.
type value struct {
	raw, source string
}

// parseSettings resolves the options from args and the environment and checks them all, reporting every
// problem at once. It returns flag.ErrHelp when help was asked for.
func parseSettings(args []string, getenv func(string) string) (settings, error) {
	fs := flag.NewFlagSet("elector", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, o := range options() {
		fs.String(o.flag, "", o.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return settings{}, err
		}
		return settings{}, fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return settings{}, fmt.Errorf("unexpected argument %q: the elector takes flags only, or the status subcommand first", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	values := map[string]value{}
	for _, o := range options() {
		switch env := getenv(o.env); {
		case set[o.flag]:
			values[o.flag] = value{fs.Lookup(o.flag).Value.String(), fmt.Sprintf("--%s=%q", o.flag, fs.Lookup(o.flag).Value.String())}
		case env != "":
			values[o.flag] = value{env, fmt.Sprintf("%s=%q", o.env, env)}
		default:
			values[o.flag] = value{o.def, fmt.Sprintf("default %s", o.def)}
		}
	}
	return checkSettings(values)
}

// checkSettings turns resolved values into settings, collecting every problem.
func checkSettings(v map[string]value) (settings, error) {
	var errs []error
	bad := func(flagName, accepted string) {
		errs = append(errs, fmt.Errorf("%s: %s", v[flagName].source, accepted))
	}
	required := func(flagName, env, what string) string {
		if v[flagName].raw == "" {
			errs = append(errs, fmt.Errorf("missing %s: set --%s or %s", what, flagName, env))
		}
		return v[flagName].raw
	}
	s := settings{sources: map[string]string{}}
	for name, val := range v {
		s.sources[name] = val.source
	}

	s.config.Identity = required("pod-name", "POD_NAME", "pod name")
	s.config.UID = required("pod-uid", "POD_UID", "pod UID")
	if ns := required("namespace", "POD_NAMESPACE", "namespace"); ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			bad("namespace", "not a namespace name: "+strings.Join(msgs, "; "))
		}
		s.config.Namespace = ns
	}
	if name := required("lease-name", "LEASE_NAME", "lease name"); name != "" {
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			bad("lease-name", "not a valid object name (a DNS-1123 subdomain): "+strings.Join(msgs, "; "))
		}
		s.config.LeaseName = name
	}

	durations := map[string]*time.Duration{
		"lease-duration": &s.config.LeaseDuration,
		"renew-deadline": &s.config.RenewDeadline,
		"retry-period":   &s.config.RetryPeriod,
	}
	durationsOK := true
	for _, name := range []string{"lease-duration", "renew-deadline", "retry-period"} {
		d, err := time.ParseDuration(v[name].raw)
		if err != nil {
			bad(name, "not a duration; use a Go duration such as 15s, 1500ms or 1m")
			durationsOK = false
			continue
		}
		*durations[name] = d
	}
	if durationsOK {
		if err := elector.CheckDurations(s.config.LeaseDuration, s.config.RenewDeadline, s.config.RetryPeriod); err != nil {
			errs = append(errs, fmt.Errorf("durations out of bounds: %w (lease-duration from %s, renew-deadline from %s, retry-period from %s; "+
				"required: 250ms <= retry-period < renew-deadline, renew-deadline >= 1s, lease-duration whole seconds from 3s to 300s and at least renew-deadline + 2s)",
				err, v["lease-duration"].source, v["renew-deadline"].source, v["retry-period"].source))
		}
	}

	port, err := strconv.Atoi(v["port"].raw)
	if err != nil || port < 1 || port > 65535 {
		bad("port", "not a port; use a number from 1 to 65535")
	}
	s.port = port
	s.bindAddress = v["bind-address"].raw
	if sock := v["control-socket"].raw; sock == "" || sock == "@" {
		bad("control-socket", "want a Unix socket path, or @name for the abstract namespace")
	} else {
		s.config.ControlSocket = sock
	}

	switch r := elector.Readiness(v["readiness"].raw); r {
	case elector.ReadinessLeader, elector.ReadinessMember:
		s.config.Readiness = r
	default:
		bad("readiness", fmt.Sprintf("use %q or %q", elector.ReadinessLeader, elector.ReadinessMember))
	}

	s.config.LabelsFile = v["pod-labels-file"].raw
	if raw := v["app-check"].raw; raw != "" {
		if probe, err := appcheck.Parse(raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v["app-check"].source, err))
		} else {
			s.appCheck = &probe
		}
	}
	if ip := v["pod-ip"].raw; ip != "" && net.ParseIP(ip) == nil {
		bad("pod-ip", "not an IP address; use the downward API's status.podIP")
	} else {
		s.podIP = ip
	}
	s.kubeconfig, s.kubeconfigSource = v["kubeconfig"].raw, v["kubeconfig"].source
	return s, errors.Join(errs...)
}

// writeUsage documents the command, every option and the HTTP API.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, `elector: Lease-based leader election sidecar.

Usage:
  elector [flags]                          take part in the election and serve its state over HTTP
  elector status [-n NAMESPACE] [LEASE] [-o table|json] [--kubeconfig PATH]
                                           print the holder, last renewal and transitions of Leases

Flags (each falls back to its environment variable; a flag wins over its variable):
`)
	for _, o := range options() {
		def := ""
		if o.def != "" {
			def = " (default " + o.def + ")"
		}
		fmt.Fprintf(w, "  --%s, $%s%s\n      %s\n", o.flag, o.env, def, o.usage)
	}
	fmt.Fprint(w, `
HTTP, on the one port:
  GET  /readyz     readiness, see --readiness
  GET  /healthz    200 while the election loop runs
  GET  /metrics    Prometheus metrics
  GET  /           {"name":"<leader>","isLeader":...,"leaseTransitions":<fencing token>,"validUntil":"..."}
  GET  /events     Server-Sent Events: the same object on connect and on every change
  POST /stepdown   refused over TCP (403): a service mesh forwards outside traffic from loopback

On the control socket (--control-socket), from inside the pod only:
  POST /stepdown   release the Lease so another replica takes over, e.g.
                   curl --abstract-unix-socket leader-election -X POST http://localhost/stepdown
  GET  /           the same answer as on the HTTP port

Exit codes: 0 after a graceful stop (SIGTERM or SIGINT; a second signal exits at once with 1),
2 for invalid settings or a port that cannot be bound.
`)
}
