package node

import (
	"fmt"
	"os"
	"path/filepath"
)

// The node's fixed names and addresses. Everything lives in 198.18.0.0/15, the range set aside for benchmarking
// networks (RFC 2544), routed to the node's bridge before anything starts, so no packet of the node ever leaves
// the machine: the node IP and pods in 198.18.0.0/24, Services in 198.19.0.0/24.
const (
	NodeName      = "le-node"
	BridgeName    = "le-node0"
	NodeIP        = "198.18.0.1"
	PodCIDR       = "198.18.0.0/24"
	ServiceCIDR   = "198.19.0.0/24"
	RoutedRange   = "198.18.0.0/15"
	APIServerPort = 6443
	etcdPort      = 2379
	etcdPeerPort  = 2380
	// LockFile makes a second harness on the same machine refuse to start: the bridge, the ports and the kubepods
	// cgroups would collide.
	LockFile = "/run/leader-election-node.lock"
	// PauseImage is the sandbox image containerd starts first in every pod; the harness builds it.
	PauseImage = "leader-election/pause:v1"
	// AppImage is the sample application (test/node/app); the harness builds it.
	AppImage = "leader-election/sample-app:v1"
	cniBin   = "/usr/lib/cni"
)

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.dir}, parts...)...)
}

func (n *Node) socket() string { return n.path("containerd", "containerd.sock") }

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// containerdConfig: its own root, state and socket; the CRI plugin with runc on cgroupfs, the local pause image,
// network namespaces under the state directory, and the node's CNI configuration. restrict_oom_score_adj because
// root here lacks CAP_SYS_RESOURCE: without it every sandbox fails to start.
func (n *Node) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, n.path("containerd", "root"), n.path("containerd", "state"), n.socket(), n.socket()+".ttrpc",
		n.path("containerd", "opt"), PauseImage, cniBin, n.path("cni", "net.d"))
}

// cniConfig: the bridge holds the node IP and is the pods' gateway; host-local hands out pod addresses and keeps
// its state in the harness's directory. Pods get a route to 198.18.0.0/15 (the node and the Services) and no
// default route, and nothing is masqueraded: no pod traffic can leave the machine.
func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "leader-election-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": %q}],
        "dataDir": %q
      }
    }
  ]
}
`, BridgeName, PodCIDR, NodeIP, RoutedRange, n.path("cni", "ipam"))
}

// kubeletConfig: see real-node.md for why each setting is needed on these machines.
func (n *Node) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
healthzBindAddress: %[1]s
healthzPort: 10248
readOnlyPort: 0
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  memory.available: "50Mi"
podLogsDir: %[2]q
resolvConf: %[3]q
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
serializeImagePulls: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]q}
authorization:
  mode: Webhook
`, NodeIP, n.path("logs", "pods"), n.path("resolv.conf"), n.pki.CAFile())
}

// kubeProxyConfig: nftables mode (its rules live in its own table, which its cleanup removes whole), bound to the
// node IP, and every setting that would rewrite a host sysctl (conntrack limits, route_localnet) turned off.
func (n *Node) kubeProxyConfig(kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %[1]q
hostnameOverride: %[2]s
bindAddress: %[3]s
healthzBindAddress: %[3]s:10256
metricsBindAddress: %[3]s:10249
clusterCIDR: %[4]s
nodePortAddresses: ["%[3]s/32"]
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
iptables:
  localhostNodePorts: false
`, kubeconfig, NodeName, NodeIP, PodCIDR)
}
