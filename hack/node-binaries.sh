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
STAGING_VERSION="v0.${K8S_VERSION#v1.}"  # v1.37.2 -> v0.37.2
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

# build NAME DIR PKG LDFLAGS: go build with a progress line every 20 s, since a first build takes minutes.
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=$4 start=$SECONDS
  if [[ -x "$dest/$name" ]]; then return 0; fi
  log "building $name from $pkg (first run only; several minutes)"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dest/$name.tmp" "$pkg") &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if (( (SECONDS - start) % 20 < 2 && SECONDS - start >= 20 )); then
      log "still building $name ($((SECONDS - start))s)"
      sleep 1
    fi
  done
  wait "$pid"
  mv "$dest/$name.tmp" "$dest/$name"
  log "built $name in $((SECONDS - start))s"
}

work="$cache/src/kubernetes"
mkdir -p "$work"

# The wrapper module: k8s.io/kubernetes, with every k8s.io/* module it pins at v0.0.0 (its staging modules)
# pointed at the published release of the same minor.
if [[ ! -f "$work/go.sum" ]] || ! grep -q "k8s.io/kubernetes ${K8S_VERSION}" "$work/go.mod" ||
  ! grep -q kube-scheduler "$work/tools.go"; then
  log "resolving k8s.io/kubernetes ${K8S_VERSION}"
  modfile=$(cd "$work" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) v0\.0\.0$#\1#p' "$modfile" | sort -u)
  {
    printf 'module leader-election.local/node\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
      "$(sed -n 's/^go //p' "$modfile")" "$K8S_VERSION"
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
    printf ')\n'
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy)
fi

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
stamp="-s -w"
for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $v.gitVersion=${K8S_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${minor}"
  stamp+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
done
build kube-proxy "$work" k8s.io/kubernetes/cmd/kube-proxy "$stamp"
build kube-scheduler "$work" k8s.io/kubernetes/cmd/kube-scheduler "$stamp"
build kubelet "$work" k8s.io/kubernetes/cmd/kubelet "$stamp"

"$dest/kubelet" --version >&2
printf '%s\n' "$dest"
