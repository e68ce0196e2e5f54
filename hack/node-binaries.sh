#!/usr/bin/env bash
# Builds the test node's Kubernetes binaries (kubelet, kube-proxy, and kube-scheduler to place pods on it) from
# source through the Go module proxy, once per version, and prints the directory that holds them. The same way
# hack/control-plane.sh builds the control plane:
# a small wrapper module that requires k8s.io/kubernetes and points its staging modules at the published release,
# the same version stamping, progress lines on stderr, and a cache beside the control plane's keyed by version.
#
# An existing NODE_ASSETS that already holds the binaries wins; nothing is built then.
# Progress goes to stderr; the only line on stdout is the directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
BINARIES=(kubelet kube-proxy kube-scheduler)

log() { printf 'node-binaries: %s\n' "$*" >&2; }

has_all() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${NODE_ASSETS:-}" ]] && has_all "$NODE_ASSETS"; then
  log "using NODE_ASSETS=$NODE_ASSETS"
  printf '%s\n' "$NODE_ASSETS"
  exit 0
fi

cache="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/leader-election/node"
dest="$cache/k8s-${K8S_VERSION}"
if has_all "$dest"; then
  printf '%s\n' "$dest"
  exit 0
fi
mkdir -p "$dest"

# One build at a time per cache: a second caller waits for the first instead of building the same thing twice.
exec 9>"$cache/.build.lock"
if ! flock -n 9; then
  log "another build of the node binaries is running; waiting for it"
  flock 9
fi
if has_all "$dest"; then
  printf '%s\n' "$dest"
  exit 0
fi

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

work="$cache/src/kubernetes"
mkdir -p "$work"

if [[ ! -f "$work/go.sum" ]] || ! grep -q "k8s.io/kubernetes ${K8S_VERSION}" "$work/go.mod" ||
  ! grep -q kube-scheduler "$work/tools.go"; then
  k8s_wrapper "$work" leader-election.local/node \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet
fi

stamp=$(k8s_stamp)
k8s_build kube-proxy "$work" k8s.io/kubernetes/cmd/kube-proxy "$stamp"
k8s_build kube-scheduler "$work" k8s.io/kubernetes/cmd/kube-scheduler "$stamp"
k8s_build kubelet "$work" k8s.io/kubernetes/cmd/kubelet "$stamp"

"$dest/kubelet" --version >&2
printf '%s\n' "$dest"
