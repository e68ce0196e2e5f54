// Package image writes container images as tarballs without a Docker engine or a registry: one layer holding a
// few files (a static binary, the CA bundle) and a config with the user and the entrypoint, in the format that
// `docker load`, `ctr images import` and `kind load image-archive` read.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one file of the image: Source on this machine is copied to Path inside the image.
type File struct {
	Path   string
	Source string
	Mode   int64
}

// Spec describes an image: its reference (repository:tag, no registry host), its files, and its config.
type Spec struct {
	Ref        string
	Files      []File
	User       string
	Entrypoint []string
	Env        []string
}

// epoch is every file's and the image's creation time, so that the same inputs give the same image digest.
var epoch = time.Unix(0, 0).UTC()

// Build returns the image Spec describes.
func Build(spec Spec) (v1.Image, error) {
	layerTar, err := tarFiles(spec.Files)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", spec.Ref, err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: epoch}, CreatedBy: "leader-election image builder", Comment: "static binary",
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.User = spec.User
	cfg.Config.Entrypoint = spec.Entrypoint
	cfg.Config.Env = spec.Env
	return mutate.ConfigFile(img, cfg)
}

// Write builds the image and writes it to out as an image tarball tagged spec.Ref.
func Write(spec Spec, out string) error {
	tag, err := name.NewTag(spec.Ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", spec.Ref, err)
	}
	img, err := Build(spec)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// tarFiles returns a tar stream holding files and their parent directories, owned by root, timestamps at epoch.
func tarFiles(files []File) ([]byte, error) {
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("file path %q: want an absolute path inside the image", f.Path)
		}
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	sortedDirs := make([]string, 0, len(dirs))
	for d := range dirs {
		sortedDirs = append(sortedDirs, d)
	}
	sort.Strings(sortedDirs)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range sortedDirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Path, err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: mode, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Binary is the Spec of an image like the project's Dockerfiles build: the static binary at /<name>, the CA
// bundle, the non-root user 65532:65532 and the binary as the entrypoint.
func Binary(ref, name, binary, caBundle string) Spec {
	files := []File{{Path: "/" + name, Source: binary, Mode: 0o755}}
	if caBundle != "" {
		files = append([]File{{Path: CABundlePath, Source: caBundle}}, files...)
	}
	return Spec{Ref: ref, Files: files, User: NonRootUser, Entrypoint: []string{"/" + name}}
}

// CABundlePath is where the images carry the CA certificates (as Debian's ca-certificates does).
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// NonRootUser is the images' user: the same numeric user as distroless' nonroot.
const NonRootUser = "65532:65532"
