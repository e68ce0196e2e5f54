// Command demo shows the product in plain lines: a Deployment annotated with leader-election/enabled is injected,
// one replica leads and alone receives the Service's traffic, traffic follows a new leader when the old one goes,
// and a rolling update completes. `make demo` runs it.
//
// Where the machine allows it (root, and the kernel's overlay filesystem, bridges and cgroups) it runs on a real
// node: the webhook installed from the chart with helm, real containers on a kubelet with containerd, and
// `curl http://<ClusterIP>/` through kube-proxy answered by the leader before and after each failover. Elsewhere it
// says why in one line and runs on test/cluster's stand-in, which runs the electors as processes and no app.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/leader-election/leader-election/test/controlplane"
	"github.com/leader-election/leader-election/test/node"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the webhook and elector binaries (make build)")
	images := flag.String("images", "bin/images", "directory holding the webhook and elector image tarballs (make images)")
	keep := flag.Bool("keep", false, "leave the cluster up until Ctrl-C and print the kubeconfig for kubectl")
	standIn := flag.Bool("stand-in", false, "use the stand-in node even where a real one could run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if reason := realNodeUnavailable(*standIn); reason != "" {
		say("== a real node cannot run here (%s); using the stand-in node instead", reason)
		err = runStandIn(ctx, *bin, *keep)
	} else {
		err = runRealNode(ctx, *images, *keep)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func realNodeUnavailable(standIn bool) string {
	if standIn {
		return "--stand-in was given"
	}
	// As root on a Debian machine, the node's packages are installed when missing; elsewhere it says what is.
	if err := node.Preflight(controlplane.RepoRoot(), func(f string, a ...any) { say("   "+f, a...) }); err != nil {
		return err.Error()
	}
	return ""
}
