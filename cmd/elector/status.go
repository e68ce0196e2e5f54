package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/leader-election/leader-election/pkg/elector"
)

// statusTimeout bounds the status command's one request.
const statusTimeout = 10 * time.Second

// leaseRow is one Lease as the status command reports it; the JSON form is for scripts.
type leaseRow struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	Holder    string     `json:"holder"`
	RenewTime *time.Time `json:"renewTime,omitempty"`
	// LastRenewalAgeSeconds is how long ago renewTime was, by this machine's clock.
	LastRenewalAgeSeconds *float64 `json:"lastRenewalAgeSeconds,omitempty"`
	LeaseTransitions      int32    `json:"leaseTransitions"`
	LeaseDurationSeconds  int32    `json:"leaseDurationSeconds,omitempty"`
}

// runStatus is "elector status [-n NAMESPACE] [LEASE] [-o table|json] [--kubeconfig PATH]".
func runStatus(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elector status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	namespace := fs.String("n", "", "the namespace (default: the kubeconfig context's, else $POD_NAMESPACE, else default)")
	fs.StringVar(namespace, "namespace", "", "same as -n")
	output := fs.String("o", "table", "output format: table or json")
	kubeconfig := fs.String("kubeconfig", getenv("KUBECONFIG"), "kubeconfig file (default $KUBECONFIG, else in-cluster)")
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, "Usage: elector status [-n NAMESPACE] [LEASE] [-o table|json] [--kubeconfig PATH]")
		fmt.Fprintln(stdout, "Prints, for each Lease of the namespace (or the one named), its holder, the age of its last renewal and its transitions (the fencing token).")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return exitOK
	}
	if err == nil && len(positional) > 1 {
		err = fmt.Errorf("at most one Lease name, got %q", positional)
	}
	if err == nil && *output != "table" && *output != "json" {
		err = fmt.Errorf("-o %q: use table or json", *output)
	}
	if err != nil {
		fmt.Fprintf(stderr, "elector status: %v (see elector status --help)\n", err)
		return exitUsage
	}
	leaseName := ""
	if len(positional) == 1 {
		leaseName = positional[0]
	}

	cfg, err := restConfig(*kubeconfig, "--kubeconfig")
	if err != nil {
		fmt.Fprintf(stderr, "elector status: %v\n", err)
		return exitUsage
	}
	if *namespace == "" {
		*namespace = defaultNamespace(*kubeconfig, getenv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	leases, err := elector.ReadLeases(ctx, cfg, *namespace, leaseName)
	if err != nil {
		fmt.Fprintf(stderr, "elector status: %v\n", err)
		return exitFailure
	}
	rows := leaseRows(leases, time.Now())
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return exitFailure
		}
		return exitOK
	}
	writeTable(stdout, rows)
	return exitOK
}

// parseInterspersed parses flags before, between and after positional arguments, as kubectl does.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// defaultNamespace is the kubeconfig context's namespace, else POD_NAMESPACE, else "default".
func defaultNamespace(kubeconfig string, getenv func(string) string) string {
	if kubeconfig != "" {
		if ns, overridden, err := clientConfig(kubeconfig).Namespace(); err == nil && (overridden || ns != "default") {
			return ns
		}
	}
	if ns := getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "default"
}

// leaseRows turns Leases into report rows, sorted by name, with renewal ages as of now.
func leaseRows(leases []coordinationv1.Lease, now time.Time) []leaseRow {
	rows := make([]leaseRow, 0, len(leases))
	for _, l := range leases {
		if _, candidate := l.Labels[elector.CandidateForLabel]; candidate {
			continue // a replica's advertisement (docs/elector.md, direct handover), not an election
		}
		r := leaseRow{Name: l.Name, Namespace: l.Namespace}
		if l.Spec.HolderIdentity != nil {
			r.Holder = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil {
			t := l.Spec.RenewTime.UTC()
			r.RenewTime = &t
			age := now.Sub(t).Round(time.Millisecond).Seconds()
			r.LastRenewalAgeSeconds = &age
		}
		if l.Spec.LeaseTransitions != nil {
			r.LeaseTransitions = *l.Spec.LeaseTransitions
		}
		if l.Spec.LeaseDurationSeconds != nil {
			r.LeaseDurationSeconds = *l.Spec.LeaseDurationSeconds
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows
}

// writeTable prints rows for people.
func writeTable(w io.Writer, rows []leaseRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOLDER\tLAST RENEWAL\tTRANSITIONS\tLEASE DURATION")
	for _, r := range rows {
		holder := r.Holder
		if holder == "" {
			holder = "<none>"
		}
		age := "<never>"
		if r.LastRenewalAgeSeconds != nil {
			age = time.Duration(*r.LastRenewalAgeSeconds*float64(time.Second)).String() + " ago"
		}
		duration := "<unset>"
		if r.LeaseDurationSeconds > 0 {
			duration = (time.Duration(r.LeaseDurationSeconds) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Name, holder, age, r.LeaseTransitions, duration)
	}
	_ = tw.Flush()
}
