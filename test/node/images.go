package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/leader-election/leader-election/internal/image"
)

// buildImages compiles the pause and sample-app programs (static, like every image of this project) and writes
// their images: nothing is pulled, since these machines reach no registry.
func (n *Node) buildImages(context.Context) error {
	for _, img := range []struct{ name, pkg, ref string }{
		{"pause", "./test/node/pause", PauseImage},
		{"app", "./test/node/app", AppImage},
	} {
		bin := n.path("images", img.name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, img.pkg)
		cmd.Dir = n.opts.RepoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", img.pkg, err, out)
		}
		spec := image.Binary(img.ref, img.name, bin, "")
		if err := image.Write(spec, n.path("images", img.name+".tar")); err != nil {
			return err
		}
	}
	return nil
}

// ProductImages writes the webhook and elector images, as make images does, from the binaries in binDir into
// outDir, and returns the tarballs' paths.
func ProductImages(binDir, outDir, version string) ([]string, error) {
	var files []string
	for _, name := range []string{"webhook", "elector"} {
		file := filepath.Join(outDir, name+".tar")
		ref := "leader-election/" + name + ":" + version
		if err := image.Write(image.Binary(ref, name, filepath.Join(binDir, name), caBundle()), file); err != nil {
			return nil, err
		}
		files = append(files, file)
	}
	return files, nil
}

// caBundle is the machine's CA bundle, which the Dockerfiles copy into the images too; none if absent.
func caBundle() string {
	if _, err := os.Stat(image.CABundlePath); err == nil {
		return image.CABundlePath
	}
	return ""
}

// Binaries returns the directory of kubelet, kube-proxy and kube-scheduler, building them on the first call
// (hack/node-binaries.sh, cached outside the clone by version).
func Binaries(repoRoot string) (string, error) {
	cmd := exec.Command("bash", filepath.Join(repoRoot, "hack", "node-binaries.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the node's binaries (hack/node-binaries.sh): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
