package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Stop stops every process the harness started and puts the machine back as it found it: pods, processes,
// mounts, cgroups, firewall rules, the bridge and its veths, sysctls, and the paths the components created. It is
// safe to call more than once and from several goroutines; later calls wait for the first.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		defer close(n.stopped)
		start := time.Now()
		var errs []error
		note := func(what string, err error) {
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
			}
		}
		note("removing the pods", n.removePods())
		n.stopProcesses()
		note("stopping the containers", n.killContainers())
		note("unmounting", n.unmountAll())
		note("removing the kubepods cgroups", removeCgroups())
		note("removing the firewall rules", n.removeFirewall())
		note("removing the network", removeNetwork())
		note("restoring sysctls", n.restoreSysctls())
		note("removing host paths", n.removeHostPaths())
		if n.dir != "" && !n.opts.Keep {
			note("removing "+n.dir, os.RemoveAll(n.dir))
		}
		if n.sigs != nil {
			signal.Stop(n.sigs)
		}
		n.releaseLock()
		n.stopErr = errors.Join(errs...)
		n.logf("node: stopped and put back in %s", time.Since(start).Round(10*time.Millisecond))
	})
	<-n.stopped
	return n.stopErr
}

// removePods lets the kubelet stop every pod the way it does on a real node (containers, then the sandbox and
// its network through CNI), with the controllers stopped first so that nothing replaces them.
func (n *Node) removePods() error {
	if n.Clientset == nil || n.proc("kubelet") == nil || n.proc("kubelet").exited() {
		return nil
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		if p := n.proc(name); p != nil {
			p.stop(5 * time.Second)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	pods := n.Clientset.CoreV1().Pods(metav1.NamespaceAll)
	for {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return nil
		}
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				_ = n.Clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d pods still on the node after 45s; the containers are stopped by force", len(list.Items))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) proc(name string) *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// stopProcesses stops what the harness started, newest first, and runs kube-proxy's own cleanup of its rules.
func (n *Node) stopProcesses() {
	n.mu.Lock()
	procs := slices.Clone(n.procs)
	n.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
		if procs[i].name == "kube-proxy" {
			bin := procs[i].cmd.Path
			if out, err := exec.Command(bin, "--cleanup").CombinedOutput(); err != nil {
				n.logf("node: kube-proxy --cleanup: %v: %s", err, lastLine(string(out)))
			}
		}
	}
}

// killContainers stops whatever containerd left running: its runtime shims (found by this node's socket in
// their command line) and every process in the kubepods cgroups.
func (n *Node) killContainers() error {
	var pids []int
	if n.dir != "" {
		pids = pidsWithArg(n.socket())
	}
	for _, cg := range kubepodsCgroups() {
		data, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) > 0 {
		n.logf("node: killing %d leftover container processes and shims", len(pids))
	}
	return killAndWait(pids, 10*time.Second)
}

// unmountAll detaches every mount under the harness's directory and the host paths the node created (the
// kubelet bind-mounts its root onto itself; pods bring overlays, shm and network namespaces), deepest first.
func (n *Node) unmountAll() error {
	var roots []string
	if n.dir != "" {
		roots = append(roots, n.dir)
	}
	for _, p := range hostPaths {
		if !slices.Contains(n.before.Paths, p) {
			roots = append(roots, p)
		}
	}
	var errs []error
	for range 5 { // a mount may hide another under it
		var targets []string
		data, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range lines(string(data)) {
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			for _, r := range roots {
				if f[4] == r || strings.HasPrefix(f[4], r+"/") {
					targets = append(targets, f[4])
					break
				}
			}
		}
		if len(targets) == 0 {
			return nil
		}
		sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
		errs = nil
		for _, t := range targets {
			if err := syscall.Unmount(t, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("%s: %w", t, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the kubepods cgroups, leaves first. It never unmounts or remounts a hierarchy.
func removeCgroups() error {
	var errs []error
	for _, dir := range kubepodsCgroups() {
		var err error
		for range 50 { // a cgroup whose last process just exited may be busy for a moment
			if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// removeFirewall deletes what kube-proxy's cleanup leaves: KUBE-* and CNI-* iptables chains (and the rules that
// jump to them), and nftables tables that did not exist before and now hold no rules.
func (n *Node) removeFirewall() error {
	var errs []error
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			var ours []string
			var jumps [][]string
			for _, line := range lines(run(tool, "-w", "-t", table, "-S")) {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "-N" && (strings.HasPrefix(f[1], "KUBE-") || strings.HasPrefix(f[1], "CNI-")) {
					ours = append(ours, f[1])
				}
				if len(f) >= 2 && f[0] == "-A" && !strings.HasPrefix(f[1], "KUBE-") && !strings.HasPrefix(f[1], "CNI-") &&
					(strings.Contains(line, "-j KUBE-") || strings.Contains(line, "-j CNI-")) {
					jumps = append(jumps, f[1:])
				}
			}
			for _, j := range jumps {
				errs = append(errs, iptables(tool, table, append([]string{"-D"}, j...)...))
			}
			for _, c := range ours {
				errs = append(errs, iptables(tool, table, "-F", c))
			}
			for _, c := range ours {
				errs = append(errs, iptables(tool, table, "-X", c))
			}
		}
	}
	for _, t := range lines(run("nft", "list", "tables")) {
		if slices.Contains(n.before.NFTables, t) {
			continue
		}
		f := strings.Fields(t) // "table ip filter"
		if len(f) != 3 {
			continue
		}
		if rules := nftRules(f[1], f[2]); len(rules) > 0 {
			errs = append(errs, fmt.Errorf("nftables %s appeared while the node ran and holds rules the harness did not make; left in place: %s", t, strings.Join(rules, "; ")))
			continue
		}
		if out, err := exec.Command("nft", "delete", "table", f[1], f[2]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft delete %s: %v: %s", t, err, out))
		}
	}
	return errors.Join(errs...)
}

func iptables(tool, table string, args ...string) error {
	full := append([]string{"-w", "-t", table}, args...)
	if out, err := exec.Command(tool, full...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", tool, strings.Join(full, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nftRules lists the rules of an nftables table: every line that is not its table, chain or base-chain header.
func nftRules(family, table string) []string {
	var rules []string
	for _, l := range lines(run("nft", "list", "table", family, table)) {
		switch {
		case strings.HasPrefix(l, "table "), strings.HasPrefix(l, "chain "), strings.HasPrefix(l, "type "), l == "}":
		default:
			rules = append(rules, l)
		}
	}
	return rules
}

// removeNetwork deletes the veths on the node's bridge, then the bridge (its addresses and routes go with it).
func removeNetwork() error {
	var errs []error
	for _, line := range lines(run("ip", "-o", "link", "show", "master", BridgeName)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		if out, err := exec.Command("ip", "link", "delete", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", name, err, out))
		}
	}
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		if out, err := exec.Command("ip", "link", "delete", BridgeName).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", BridgeName, err, out))
		}
	}
	return errors.Join(errs...)
}

func (n *Node) restoreSysctls() error {
	var errs []error
	for k, v := range n.before.Sysctls {
		if now, err := readSysctl(k); err == nil && now != v {
			n.logf("node: sysctl %s back from %s to %s", k, now, v)
			if err := writeSysctl(k, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%s: %w", k, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (n *Node) removeHostPaths() error {
	var errs []error
	for _, p := range hostPaths {
		if slices.Contains(n.before.Paths, p) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func lastLine(s string) string {
	l := lines(s)
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}
