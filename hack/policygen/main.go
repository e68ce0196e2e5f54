// Command policygen writes the admission policies of admission mode "policy" (pkg/admissionpolicy) into the chart
// and config/injection-policies. Run it from the repository's root after changing pkg/inject; the test of
// pkg/admissionpolicy fails while the committed files differ from what it would write.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/leader-election/leader-election/pkg/admissionpolicy"
)

func main() {
	root := flag.String("root", ".", "the repository's root")
	version := flag.String("version", admissionpolicy.ConfigVersion, "the version config/injection-policies's defaults name (its elector image tag)")
	flag.Parse()
	files, err := admissionpolicy.Files(*version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "policygen:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(*root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "policygen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "policygen:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", name)
	}
}
