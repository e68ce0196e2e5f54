package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leader-election/leader-election/test/controlplane"
	"github.com/leader-election/leader-election/test/node"
)

// startNode builds the product's images and brings up the real node. It fails the test, never skips it, on a
// machine that cannot run a node, with the reason. At the end it stops the node and fails the test if the machine
// is not as before.
func startNode(t *testing.T) *node.Node {
	t.Helper()
	root := controlplane.RepoRoot()
	cp, err := controlplane.Assets()
	if err != nil {
		t.Fatal(err)
	}
	nodeBin, err := node.Binaries(root)
	if err != nil {
		t.Fatal(err)
	}
	binDir, imgDir := t.TempDir(), t.TempDir()
	for _, cmd := range []string{"webhook", "elector"} {
		if err := os.Rename(controlplane.Build(t, "./cmd/"+cmd), filepath.Join(binDir, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	images, err := node.ProductImages(binDir, imgDir, chartAppVersion(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(t.Context(), node.Options{ControlPlane: cp, NodeBinaries: nodeBin, RepoRoot: root, Images: images, Logf: t.Logf})
	if err != nil {
		t.Fatalf("the end-to-end suite runs on a real node (kubelet, containerd, kube-proxy), and it did not start: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"kubelet", "kube-proxy", "containerd"} {
				t.Logf("--- %s log (tail)\n%s", c, n.Log(c, 3000))
			}
		}
		if err := n.Stop(); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
		after := node.TakeSnapshot()
		if diff := n.Before().Diff(after); len(diff) > 0 {
			t.Errorf("the machine is not as before the node started:\n  %s", strings.Join(diff, "\n  "))
		} else {
			t.Logf("machine restored: as before the node started (%s)", after.Summary())
		}
	})
	return n
}

// chartAppVersion is the chart's appVersion, the tag its default images carry.
func chartAppVersion(t *testing.T) string {
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "charts", "leader-election", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?`).FindSubmatch(data)
	if m == nil {
		t.Fatal("Chart.yaml has no appVersion")
	}
	return string(m[1])
}

// helmInstall installs the chart as a user would, with the images the node has loaded and the chart's own
// self-signed certificate, and waits for the webhook to be ready.
func helmInstall(t *testing.T, n *node.Node) {
	t.Helper()
	helm, err := exec.LookPath("helm")
	if err != nil {
		helm = filepath.Join(controlplane.RepoRoot(), "bin", "tools", "helm")
		if _, err := os.Stat(helm); err != nil {
			t.Fatal("helm not found on PATH nor in bin/tools; run make tools (make test does)")
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, helm, "install", "leader-election", filepath.Join(controlplane.RepoRoot(), "charts", "leader-election"),
		"--kubeconfig", n.AdminKubeconfig, "--namespace", webhookNamespace, "--create-namespace",
		"--set", "certManager.enabled=false",
		// The images are on the node already; nothing can be pulled here.
		"--set", "image.pullPolicy=Never",
		"--wait", "--timeout", "3m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out.String())
	}
	t.Logf("helm install of charts/leader-election: webhook ready after %s", time.Since(start).Round(100*time.Millisecond))
}
