#!/usr/bin/env bash
# build.sh builds what the local cluster runs, from the Go module proxy and
# Debian's packages, into one cache directory, once per machine: a part
# already built is kept (delete it to rebuild it).
#
#   build.sh [STEP...]     steps (default: all, in this order):
#     tools    ko, crane, crictl, the OCI registry (distribution)
#     kube     etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
#              kubelet, kube-proxy, kubectl (k8s.io/kubernetes $K8S_VERSION)
#
# Images are built by images.sh (they need the registry up).
#
#   KMEP_CLUSTER_CACHE   cache directory (default ~/.cache/kmep/cluster)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

K8S_VERSION=1.37.1
KO_VERSION=v0.19.1
GGCR_VERSION=v0.22.1
CRICTL_VERSION=v1.37.0
DISTRIBUTION_VERSION=v3.1.2

build_tools() {
  local t
  for t in "ko:github.com/google/ko@$KO_VERSION" \
    "crane:github.com/google/go-containerregistry/cmd/crane@$GGCR_VERSION" \
    "crictl:sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" \
    "registry:github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION"; do
    [ -x "$BIN/${t%%:*}" ] && continue
    GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath -ldflags=-s "${t#*:}"
  done
}

# kube builds the node and control-plane binaries from k8s.io/kubernetes
# the way local/testenv/testbins.sh builds the API server: a scratch module
# that requires it and replaces each staging module with its published
# version. etcd is the test servers' own (testbins.sh), not a second build.
KUBE_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
build_kube() {
  local missing="" c d mod
  for c in $KUBE_CMDS; do [ -x "$BIN/$c" ] || missing="$missing $c"; done
  if [ -n "$missing" ]; then
    d="$CACHE/src/kubernetes"
    if [ ! -f "$d/go.sum" ]; then
      rm -rf "$d" && mkdir -p "$d"
      mod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      [ -n "$mod" ] || die "cannot download k8s.io/kubernetes v$K8S_VERSION from the module proxy"
      (cd "$d" && go mod init kmep.local/kubernetes >/dev/null 2>&1 &&
        go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION" &&
        for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$mod"); do
          go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"
        done &&
        { echo 'package main'; echo 'import ('
          for c in $missing; do echo "	_ \"k8s.io/kubernetes/cmd/$c/app\""; done
          echo ')'; echo 'func main() {}'; } >tools.go &&
        sed -i 's#"k8s.io/kubernetes/cmd/kubectl/app"#"k8s.io/kubectl/pkg/cmd"#' tools.go &&
        go mod tidy)
    fi
    local pkgs=""
    for c in $missing; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
    # One go build for all of them: they share most of their packages.
    (cd "$d" && CGO_ENABLED=0 go build -trimpath -o "$BIN/" -ldflags "-s \
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.} \
      -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION" $pkgs)
  fi
  if [ ! -x "$BIN/etcd" ]; then
    TESTBINS=etcd "$here/../testenv/testbins.sh"
    [ -x "$TESTBIN/etcd" ] || die "etcd did not build: $(cat "$TESTBIN/etcd.skip" 2>/dev/null)"
    ln -sf "$TESTBIN/etcd" "$BIN/etcd"
  fi
}

mkdir -p "$BIN"
steps=${*:-tools kube}
for s in $steps; do
  step "build $s" "build_$s"
done
