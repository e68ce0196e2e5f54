package install

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/leader-election/leader-election/test/controlplane"
)

// TestImageTarballs checks that make images writes, for each Dockerfile, an image with the same content: the
// files the final stage copies (the static binary and the CA bundle), the Dockerfile's USER and ENTRYPOINT, tagged
// leader-election/<name>:<version> as make docker-build tags it.
func TestImageTarballs(t *testing.T) {
	binDir, outDir := t.TempDir(), t.TempDir()
	for _, cmd := range []string{"webhook", "elector"} {
		if err := os.Rename(controlplane.Build(t, "./cmd/"+cmd), filepath.Join(binDir, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	// The command make images runs.
	gen := exec.Command("go", "run", "./hack/images", "--bin", binDir, "--out", outDir, "--version", "v9.9.9")
	gen.Dir = controlplane.RepoRoot()
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run ./hack/images: %v\n%s", err, out)
	}

	for _, name := range []string{"webhook", "elector"} {
		t.Run(name, func(t *testing.T) {
			df := parseDockerfile(t, filepath.Join(controlplane.RepoRoot(), "Dockerfile."+name))
			final := df.stages[len(df.stages)-1]
			file := filepath.Join(outDir, name+".tar")

			img, err := tarball.ImageFromPath(file, nil)
			if err != nil {
				t.Fatalf("%s is not an image tarball: %v", file, err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Config.User != final.user {
				t.Errorf("user %q, Dockerfile.%s says USER %s", cfg.Config.User, name, final.user)
			}
			var entrypoint []string
			if err := json.Unmarshal([]byte(final.entrypoint), &entrypoint); err != nil {
				t.Fatalf("Dockerfile.%s ENTRYPOINT %s is not the exec form: %v", name, final.entrypoint, err)
			}
			if !slices.Equal(cfg.Config.Entrypoint, entrypoint) {
				t.Errorf("entrypoint %q, Dockerfile.%s says %q", cfg.Config.Entrypoint, name, entrypoint)
			}
			if cfg.OS != "linux" || cfg.Architecture == "" {
				t.Errorf("platform %s/%s, want linux/<arch>", cfg.OS, cfg.Architecture)
			}

			var want []string
			for _, c := range final.stageCopies {
				want = append(want, c[len(c)-1])
			}
			files := imageFiles(t, img)
			var got []string
			for path := range files {
				got = append(got, path)
			}
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("files %q, Dockerfile.%s copies %q", got, name, want)
			}
			if bin, ok := files[entrypoint[0]]; ok && !isStatic(bin) {
				t.Errorf("%s is not a static executable", entrypoint[0])
			}

			tags := repoTags(t, file)
			if want := "leader-election/" + name + ":v9.9.9"; !slices.Equal(tags, []string{want}) {
				t.Errorf("tagged %q, want %q (what make docker-build tags)", tags, want)
			}
		})
	}
}

// imageFiles reads every regular file of the image's layers, by absolute path.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Typeflag == tar.TypeReg {
				data, _ := io.ReadAll(tr)
				files["/"+strings.TrimPrefix(hdr.Name, "/")] = data
			}
		}
		rc.Close()
	}
	return files
}

func isStatic(bin []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// repoTags reads the tags from the tarball's manifest.json, which docker load, ctr import and kind read.
func repoTags(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s has no manifest.json: %v", file, err)
		}
		if hdr.Name == "manifest.json" {
			var m []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&m); err != nil || len(m) != 1 {
				t.Fatalf("manifest.json of %s: %v (%d entries)", file, err, len(m))
			}
			return m[0].RepoTags
		}
	}
}
