// Command images writes the webhook and elector images as image tarballs from the static binaries in bin/, with
// the content of Dockerfile.webhook and Dockerfile.elector, for clusters that load images from files (kind, k3d,
// containerd's ctr) and machines without Docker. `make images` runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/leader-election/leader-election/internal/image"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the webhook and elector binaries (make build)")
	out := flag.String("out", "bin/images", "directory the image tarballs are written to")
	version := flag.String("version", "v0.1.0", "image tag")
	ca := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied into the images, as the Dockerfiles copy their build image's")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for _, name := range []string{"webhook", "elector"} {
		ref := "leader-election/" + name + ":" + *version
		file := filepath.Join(*out, name+".tar")
		if err := image.Write(image.Binary(ref, name, filepath.Join(*bin, name), *ca), file); err != nil {
			fail(err)
		}
		fmt.Printf("%s\t%s\n", ref, file)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}
