// Command noop is the physical limit of a mutating webhook, the benchmark's baseline for admission: it answers
// every request "allowed", with no patch, at once. It is served exactly as the webhook is: controller-runtime's
// webhook server with the same certificate directory and TLS settings, on the same two paths, and registered by
// the benchmark with a copy of the shipped MutatingWebhookConfiguration (same rules, matchConditions, timeouts).
// Whatever the API server spends on a call to it is the cost of any webhook; what ours adds beyond it is ours.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func main() {
	port := flag.Int("port", 9443, "port the admission endpoints are served on (TLS)")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key")
	flag.Parse()
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	server := crwebhook.NewServer(crwebhook.Options{Port: *port, CertDir: *certDir})
	allow := &crwebhook.Admission{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})}
	// The paths of config/webhook/manifests.yaml.
	server.Register("/mutate-pod", allow)
	server.Register("/mutate-pod-enforced", allow)
	if err := server.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}
