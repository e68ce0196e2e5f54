#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, etcd) from source through the Go
# module proxy, once per version, and prints the directory that holds them (for KUBEBUILDER_ASSETS).
#
# Why from source: these machines have no cluster, no Docker and no download of prebuilt binaries, but the module
# proxy serves Kubernetes' and etcd's own source. Both need a small wrapper module: k8s.io/kubernetes replaces its
# staging modules with ./staging paths that a module download does not carry, and etcd's go.mod has replace
# directives that only apply inside its own repository.
#
# An existing KUBEBUILDER_ASSETS that already holds the binaries wins; nothing is built then.
# Progress goes to stderr; the only line on stdout is the asset directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"   # the etcd release k8s.io/kubernetes ${K8S_VERSION} requires

log() { printf 'control-plane: %s\n' "$*" >&2; }

has_all() {
  local dir=$1; shift
  local b
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_all "$KUBEBUILDER_ASSETS" kube-apiserver etcd kube-controller-manager; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  printf '%s\n' "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/leader-election/control-plane"
dest="$cache/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
if has_all "$dest" kube-apiserver etcd kube-controller-manager; then
  printf '%s\n' "$dest"
  exit 0
fi
mkdir -p "$dest"

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

work="$cache/src"
mkdir -p "$work/kubernetes" "$work/etcd"

# kube-apiserver and kube-controller-manager: require k8s.io/kubernetes and point every k8s.io/* module it pins
# at v0.0.0 (its staging modules) at the published release of the same minor.
if [[ ! -f "$work/kubernetes/go.sum" ]] || ! grep -q "k8s.io/kubernetes ${K8S_VERSION}" "$work/kubernetes/go.mod"; then
  k8s_wrapper "$work/kubernetes" leader-election.local/control-plane \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
fi

stamp=$(k8s_stamp)
k8s_build kube-apiserver "$work/kubernetes" k8s.io/kubernetes/cmd/kube-apiserver "$stamp"
k8s_build kube-controller-manager "$work/kubernetes" k8s.io/kubernetes/cmd/kube-controller-manager "$stamp"

# etcd: its main package lives in go.etcd.io/etcd/server/v3's etcdmain; a one-line main calls it.
if [[ ! -f "$work/etcd/go.sum" ]] || ! grep -q "go.etcd.io/etcd/server/v3 ${ETCD_VERSION}" "$work/etcd/go.mod"; then
  log "resolving etcd ${ETCD_VERSION}"
  cat >"$work/etcd/go.mod" <<MOD
module leader-election.local/etcd

go 1.25

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
MOD
  cat >"$work/etcd/main.go" <<'GO'
// Command etcd is etcd's own server, built from the published go.etcd.io/etcd/server/v3 module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$work/etcd" && GOFLAGS=-mod=mod go mod tidy)
fi
k8s_build etcd "$work/etcd" . "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}"

"$dest/kube-apiserver" --version >&2
printf '%s\n' "$dest"
