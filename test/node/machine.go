package node

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// sysctls are the kernel settings the kubelet, kube-proxy and the CNI bridge plugin may change. The harness
// records them before the node starts and writes back any that changed; kernel.panic_on_oops left at 1 would
// reboot the machine on any oops.
var sysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
	"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.route_localnet",
	"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
	"net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
	"net.netfilter.nf_conntrack_tcp_timeout_close_wait", "net.netfilter.nf_conntrack_tcp_be_liberal",
}

// hostPaths are created by the kubelet, containerd and the CNI plugins outside the harness's directory whatever
// their configuration says. The harness removes those that did not exist before it started.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/var/lib/cni", "/run/containerd",
	"/var/lib/containerd", "/opt/containerd", "/etc/cni", "/run/netns", "/var/run/netns", "/etc/kubernetes",
}

// cgroupRoot holds the cgroup hierarchies (v1 here, one directory per controller, plus the unified one).
const cgroupRoot = "/sys/fs/cgroup"

// dirPrefix starts the name of every harness directory; it finds the node's processes on the machine.
const dirPrefix = "leader-election-node-"

// Snapshot is what the harness must leave as it found it.
type Snapshot struct {
	Sysctls   map[string]string
	Links     []string
	Routes    []string
	Chains    []string // iptables chains named KUBE-* or CNI-*, as "table chain"
	NFTables  []string
	Mounts    []string
	Paths     []string // hostPaths that exist
	Cgroups   []string // kubepods cgroups
	Processes []string // processes whose command line names a harness directory
}

// TakeSnapshot records the machine's state.
func TakeSnapshot() Snapshot {
	s := Snapshot{Sysctls: map[string]string{}}
	for _, k := range sysctls {
		if v, err := readSysctl(k); err == nil {
			s.Sysctls[k] = v
		}
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		s.Links = append(s.Links, i.Name)
	}
	for _, line := range lines(run("ip", "-4", "route", "show", "table", "all")) {
		if strings.Contains(line, "198.18.") || strings.Contains(line, "198.19.") {
			s.Routes = append(s.Routes, line)
		}
	}
	s.Chains = firewallChains()
	s.NFTables = lines(run("nft", "list", "tables"))
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range lines(string(mountinfo)) {
		if f := strings.Fields(line); len(f) > 4 {
			s.Mounts = append(s.Mounts, f[4])
		}
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			s.Paths = append(s.Paths, p)
		}
	}
	s.Cgroups = kubepodsCgroups()
	for _, pid := range pidsWithArg(dirPrefix) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		s.Processes = append(s.Processes, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	for _, l := range [][]string{s.Links, s.Routes, s.Chains, s.NFTables, s.Mounts, s.Paths, s.Cgroups, s.Processes} {
		sort.Strings(l)
	}
	return s
}

// Diff lists how after differs from s; empty means the machine is as it was.
func (s Snapshot) Diff(after Snapshot) []string {
	var d []string
	for _, k := range sysctls {
		if s.Sysctls[k] != after.Sysctls[k] {
			d = append(d, fmt.Sprintf("sysctl %s: %q before, %q now", k, s.Sysctls[k], after.Sysctls[k]))
		}
	}
	for _, c := range []struct {
		what          string
		before, after []string
	}{
		{"network interface", s.Links, after.Links}, {"route", s.Routes, after.Routes},
		{"iptables chain", s.Chains, after.Chains}, {"nftables table", s.NFTables, after.NFTables},
		{"mount", s.Mounts, after.Mounts}, {"path", s.Paths, after.Paths},
		{"cgroup", s.Cgroups, after.Cgroups}, {"process", s.Processes, after.Processes},
	} {
		for _, x := range c.after {
			if !slices.Contains(c.before, x) {
				d = append(d, fmt.Sprintf("%s left behind: %s", c.what, x))
			}
		}
		for _, x := range c.before {
			if !slices.Contains(c.after, x) {
				d = append(d, fmt.Sprintf("%s gone: %s", c.what, x))
			}
		}
	}
	return d
}

// Summary says in one line what was compared.
func (s Snapshot) Summary() string {
	return fmt.Sprintf("%d sysctls, %d interfaces, %d routes in 198.18.0.0/15, %d KUBE-/CNI- chains, %d nftables tables, %d mounts, %d host paths, %d kubepods cgroups, %d node processes",
		len(s.Sysctls), len(s.Links), len(s.Routes), len(s.Chains), len(s.NFTables), len(s.Mounts), len(s.Paths), len(s.Cgroups), len(s.Processes))
}

func readSysctl(key string) (string, error) {
	data, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
	return strings.TrimSpace(string(data)), err
}

func writeSysctl(key, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")), []byte(value), 0o644)
}

// firewallChains lists the iptables chains the node's components create, in every table.
func firewallChains() []string {
	var chains []string
	for _, table := range []string{"filter", "nat", "mangle", "raw"} {
		for _, tool := range []string{"iptables", "ip6tables"} {
			for _, line := range lines(run(tool, "-w", "-t", table, "-S")) {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "-N" && (strings.HasPrefix(f[1], "KUBE-") || strings.HasPrefix(f[1], "CNI-")) {
					chains = append(chains, tool+" "+table+" "+f[1])
				}
			}
		}
	}
	return chains
}

// kubepodsCgroups lists the kubepods cgroups of every hierarchy, deepest first (the order to remove them in).
func kubepodsCgroups() []string {
	var dirs []string
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		root := filepath.Join(cgroupRoot, h.Name(), "kubepods")
		if _, err := os.Stat(root); err != nil {
			continue
		}
		_ = filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

func run(name string, args ...string) string {
	out, _ := exec.Command(name, args...).Output()
	return string(out)
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
