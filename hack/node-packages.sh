#!/usr/bin/env bash
# Installs the Debian packages a real test node needs (containerd, runc, the CNI plugins, iptables, nftables,
# conntrack) when any is missing. The packaged containerd service is not started: the node harness runs its own
# containerd with its own configuration.
set -euo pipefail

need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
if ((${#need[@]} == 0)); then exit 0; fi

echo "node-packages: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; an old list may name versions the mirror no longer has.
apt-get update -qq
# policy-rc.d keeps the packaged containerd service from starting (where the machine has a service manager).
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
