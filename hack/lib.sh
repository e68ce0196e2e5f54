# Shared by hack/control-plane.sh and hack/node-binaries.sh, which build Kubernetes' binaries from source through
# the Go module proxy. Source it after defining K8S_VERSION, dest (the output directory) and log().

# k8s_build NAME DIR PKG LDFLAGS: go build PKG in DIR into $dest/NAME, with a progress line every 20 s, since a
# first build takes minutes. A binary already there is kept.
k8s_build() {
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

# k8s_wrapper DIR MODULE PKG...: writes, in DIR, a module named MODULE that requires k8s.io/kubernetes
# ${K8S_VERSION} and points every k8s.io/* module it pins at v0.0.0 (its staging modules, which a module download
# does not carry) at the published release of the same minor, plus a tools.go importing each PKG; then tidies it.
k8s_wrapper() {
  local dir=$1 module=$2; shift 2
  local staging_version="v0.${K8S_VERSION#v1.}" # v1.37.2 -> v0.37.2
  log "resolving k8s.io/kubernetes ${K8S_VERSION}"
  local modfile staging m
  modfile=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) v0\.0\.0$#\1#p' "$modfile" | sort -u)
  {
    printf 'module %s\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
      "$module" "$(sed -n 's/^go //p' "$modfile")" "$K8S_VERSION"
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
    printf ')\n'
  } >"$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for m in "$@"; do printf '\t_ "%s"\n' "$m"; done
    printf ')\n'
  } >"$dir/tools.go"
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy)
}

# k8s_stamp prints the -ldflags that stamp ${K8S_VERSION} into a binary as Kubernetes' own build does.
k8s_stamp() {
  local minor="${K8S_VERSION#v1.}" v stamp="-s -w"
  minor="${minor%%.*}"
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $v.gitVersion=${K8S_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${minor}"
    stamp+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$stamp"
}
