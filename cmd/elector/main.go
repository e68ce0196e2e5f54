// Command elector is the leader election sidecar: it competes for a coordination.k8s.io/v1 Lease with the
// other replicas of a workload and serves the outcome over HTTP (readiness, fencing token, change stream).
// Its contract is the README's "The elector's contract"; docs/elector.md explains the guarantees.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK = 0
	// exitFailure is for failures at run time, and for a second signal.
	exitFailure = 1
	// exitUsage is for invalid settings and a port that cannot be bound: retrying cannot fix them.
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run dispatches between the election (the default) and the status subcommand, and maps errors to exit codes.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "status" {
		return runStatus(args[1:], getenv, stdout, stderr)
	}
	s, err := parseSettings(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		writeUsage(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "elector: invalid settings:\n%s\nRun 'elector --help' for every setting.\n", indent(err.Error()))
		return exitUsage
	}
	return serve(s, stderr)
}

// indent puts each line of a (joined) error message on its own indented line.
func indent(msg string) string {
	return "  " + strings.ReplaceAll(msg, "\n", "\n  ")
}
