package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leader-election/leader-election/test/controlplane"
	"github.com/leader-election/leader-election/test/node"
)

// startNode builds the product's images and brings up the real node. It fails the test, never skips it, on a
// machine that cannot run a node, with the reason. At the end it stops the node and fails the test if the machine
// is not as before.
func startNode(t *testing.T) *node.Node {
	t.Helper()
	root := controlplane.RepoRoot()
	if err := node.Preflight(root, t.Logf); err != nil {
		t.Fatalf("the end-to-end suite runs on a real node (kubelet, containerd, kube-proxy), and this machine cannot run one: %v", err)
	}
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
	version, err := node.ChartAppVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	images, err := node.ProductImages(binDir, imgDir, version)
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
