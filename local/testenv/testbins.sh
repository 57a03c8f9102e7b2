#!/usr/bin/env bash
# Builds the real servers kmep's tests start (MinIO, etcd, kube-apiserver,
# CoreDNS) from the Go module proxy into one cache directory, once per
# machine: a binary already there is kept. A build that fails leaves
# NAME.skip with the reason, and the tests that need NAME skip saying so.
#
#   KMEP_TESTBIN   cache directory (default ${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kmep/testbin)
#   TESTBINS       which to build (default: all)
set -uo pipefail

dir=${KMEP_TESTBIN:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kmep/testbin}
mkdir -p "$dir"
want=${TESTBINS:-minio etcd kube-apiserver coredns}

# Pinned: the proxy refuses some listings, and a test server that changes
# under the tests is not what we want.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
ETCD_VERSION=v3.7.3
K8S_VERSION=1.37.1
COREDNS_VERSION=v1.15.0

scratch() { # a throwaway module directory
  local d
  d=$(mktemp -d)
  (cd "$d" && go mod init kmep.local/testbin >/dev/null 2>&1)
  echo "$d"
}

build_minio() {
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags=-s "github.com/minio/minio@$MINIO_VERSION"
}

build_etcd() {
  local d; d=$(scratch)
  (cd "$d" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$dir/etcd" go.etcd.io/etcd/server/v3)
}

build_kube-apiserver() {
  local d mod
  d=$(scratch)
  mod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -n "$mod" ] || { echo "cannot download k8s.io/kubernetes v$K8S_VERSION"; return 1; }
  (cd "$d" &&
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION" &&
    for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$mod"); do
      go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"
    done &&
    printf 'package main\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\nfunc main() {}\n' > tools.go &&
    go mod tidy &&
    CGO_ENABLED=0 go build -trimpath -o "$dir/kube-apiserver" -ldflags "-s \
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.} " k8s.io/kubernetes/cmd/kube-apiserver)
}

build_coredns() {
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags=-s "github.com/coredns/coredns@$COREDNS_VERSION"
}

status=0
for name in $want; do
  if [ -x "$dir/$name" ]; then
    echo "testbins: $name cached in $dir"
    continue
  fi
  echo "testbins: building $name into $dir"
  start=$(date +%s)
  if "build_$name" >"$dir/$name.log" 2>&1 && [ -x "$dir/$name" ]; then
    rm -f "$dir/$name.skip"
    echo "testbins: $name built in $(($(date +%s) - start)) s"
  else
    echo "could not build $name from the module proxy (log: $dir/$name.log): $(tail -n 1 "$dir/$name.log")" >"$dir/$name.skip"
    cat "$dir/$name.skip"
    status=0 # tests skip with this reason; the run goes on
  fi
done
exit $status
