package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/leader-election/leader-election/test/node"
)

func main() {
	cp := strings.TrimSpace(out("hack/control-plane.sh"))
	nb := strings.TrimSpace(out("hack/node-binaries.sh"))
	n, err := node.Start(context.Background(), node.Options{ControlPlane: cp, NodeBinaries: nb, RepoRoot: ".", Keep: true, Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }})
	if err != nil {
		fmt.Println("start:", err)
		os.Exit(1)
	}
	fmt.Println("dir", n.Dir(), "kubeconfig", n.AdminKubeconfig)
	if d := os.Getenv("HOLD"); d != "" {
		dd, _ := time.ParseDuration(d)
		time.Sleep(dd)
	}
	fmt.Println("stop:", n.Stop())
	after := node.TakeSnapshot()
	fmt.Println("diff:", n.Before().Diff(after))
}

func out(s string) string {
	b, err := exec.Command("bash", s).Output()
	if err != nil {
		panic(err)
	}
	return string(b)
}
