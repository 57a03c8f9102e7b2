#!/usr/bin/env bash
# images.sh builds the local cluster's images from source into the
# registry on loopback (up.sh starts it first), once per machine: an
# image whose reference is recorded in $CACHE/images/NAME.ref and still
# in the registry is kept. Each reference is by digest.
#
#   images.sh [IMAGE...]   default: all, in this order:
#     base      CA certificates, a nonroot user (65532), /tmp: the base of every image
#     pause     the pod sandbox (local/cluster/pause)
#     coredns   github.com/coredns/coredns $COREDNS_VERSION
#     traefik   github.com/traefik/traefik/v3 $TRAEFIK_VERSION (its Knative provider)
#     minio     github.com/minio/minio (the test servers' version), pushed as
#               quay.io/minio/minio's name in manifests/minio.yaml
#     redis     Debian's redis-server and redis-cli with their libraries,
#               pushed as manifests/redis.yaml's docker.io/library/redis name
#     serving   Knative Serving's components and release YAML from the
#               knative.dev/serving version in go.mod (ko resolve of config/core)
#     eventing  Knative Eventing's core, the in-memory channel and the
#               multi-tenant channel-based Broker from the knative.dev/eventing
#               version in go.mod (ko resolve of their config/ folders)
#
# Images whose manifests name a public registry (Redis, MinIO) are pushed
# under that name's path; containerd's registry config (up.sh) sends
# docker.io and quay.io pulls to this registry, so manifests/ is applied
# as a user applies it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

COREDNS_VERSION=v1.15.0
TRAEFIK_VERSION=v3.6.0
MINIO_VERSION=$(sed -n 's/^MINIO_VERSION=//p' "$root/local/testenv/testbins.sh")
IMAGES=$CACHE/images
mkdir -p "$IMAGES"
export KO_DEFAULTPLATFORMS=linux/amd64 GOFLAGS=-mod=mod

# fresh NAME: true when NAME's recorded image is still in the registry.
fresh() {
  [ -s "$IMAGES/$1.ref" ] && crane digest "$(cat "$IMAGES/$1.ref")" >/dev/null 2>&1
}

# record NAME REF: keeps REF (a tag or digest reference) as NAME's image,
# by digest: REPOSITORY@sha256:...
record() {
  local repo=${2%@*} d last
  last=${repo##*/}
  case $last in *:*) repo=${repo%:*} ;; esac
  d=$(crane digest "$2")
  echo "$repo@$d" >"$IMAGES/$1.ref"
}

ref() { cat "$IMAGES/$1.ref"; }

build_base() {
  local d
  d=$(mktemp -d)
  mkdir -p "$d/etc/ssl/certs" "$d/tmp" "$d/home/nonroot" "$d/data"
  [ -s /etc/ssl/certs/ca-certificates.crt ] || die "no /etc/ssl/certs/ca-certificates.crt: apt-get install ca-certificates"
  cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$d/etc/group"
  chmod 1777 "$d/tmp"
  chown 65532:65532 "$d/home/nonroot"
  tar --numeric-owner -C "$d" -cf "$d.tar" .
  crane append --oci-empty-base -f "$d.tar" -t "$REGISTRY/kmep/base:build"
  crane mutate --set-platform linux/amd64 --user 65532:65532 --workdir /home/nonroot \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    -t "$REGISTRY/kmep/base:latest" "$REGISTRY/kmep/base:build"
  record base "$REGISTRY/kmep/base:latest"
  rm -rf "$d" "$d.tar"
}

# ko_build NAME REPO DIR IMPORTPATH: ko builds IMPORTPATH in the module
# at DIR onto the base image, into $REGISTRY/REPO, recorded as NAME.
ko_build() {
  local name=$1 repo=$2 dir=$3 pkg=$4 out
  out=$(cd "$dir" && KO_DOCKER_REPO="$REGISTRY/$repo" KO_DEFAULTBASEIMAGE="$(ref base)" \
    ko build --bare --sbom=none --platform=linux/amd64 "$pkg")
  echo "$out"
  record "$name" "$out"
}

# scratch DIR MODULE@VERSION [REPLACE...]: a module at DIR whose only
# content is MODULE's main package as a tool, for ko to build.
scratch() {
  local dir=$1 tool=$2 r
  shift 2
  [ -f "$dir/go.sum" ] && return 0
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && go mod init "kmep.local/$(basename "$dir")" >/dev/null 2>&1 &&
    for r in "$@"; do go mod edit -replace="$r"; done &&
    go get -tool "$tool")
}

build_pause() { ko_build pause kmep/pause "$root" ./local/cluster/pause; }

build_coredns() {
  scratch "$CACHE/src/coredns" "github.com/coredns/coredns@$COREDNS_VERSION"
  ko_build coredns kmep/coredns "$CACHE/src/coredns" github.com/coredns/coredns
}

build_traefik() {
  # The three replace lines of Traefik's own go.mod (forks it builds with).
  scratch "$CACHE/src/traefik" "github.com/traefik/traefik/v3/cmd/traefik@$TRAEFIK_VERSION" \
    github.com/abbot/go-http-auth=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e \
    github.com/gorilla/mux=github.com/containous/mux@v0.0.0-20250523120546-41b6ec3aed59 \
    github.com/mailgun/minheap=github.com/containous/minheap@v0.0.0-20190809180810-6e71eb837595
  ko_build traefik kmep/traefik "$CACHE/src/traefik" github.com/traefik/traefik/v3/cmd/traefik
}

build_minio() {
  scratch "$CACHE/src/minio" "github.com/minio/minio@$MINIO_VERSION"
  ko_build minio minio/minio "$CACHE/src/minio" github.com/minio/minio
  local tag
  tag=$(sed -n 's#.*image: quay.io/minio/minio:\(.*\)#\1#p' "$root/manifests/minio.yaml")
  crane tag "$(ref minio)" "$tag"
}

build_redis() {
  local d bin lib tag
  d=$(mktemp -d)
  for bin in /usr/bin/redis-server /usr/bin/redis-cli; do
    [ -x "$bin" ] || die "no $bin: apt-get install redis-server redis-tools"
    mkdir -p "$d/usr/bin" && cp -L "$bin" "$d/usr/bin/"
    for lib in $(ldd "$bin" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}'); do
      mkdir -p "$d$(dirname "$lib")" && cp -L "$lib" "$d$lib"
    done
  done
  mkdir -p "$d/lib64" && cp -L /lib64/ld-linux-x86-64.so.2 "$d/lib64/"
  tar --numeric-owner -C "$d" -cf "$d.tar" .
  tag=$(sed -n 's#.*image: docker.io/library/redis:\(.*\)#\1#p' "$root/manifests/redis.yaml")
  crane append -b "$(ref base)" -f "$d.tar" -t "$REGISTRY/library/redis:$tag"
  crane mutate --entrypoint /usr/bin/redis-server --user 999:999 -t "$REGISTRY/library/redis:$tag" "$REGISTRY/library/redis:$tag"
  record redis "$REGISTRY/library/redis:$tag"
  rm -rf "$d" "$d.tar"
}

# knative_src MODULE: a writable copy of MODULE (at the version go.mod
# requires) in $CACHE/src, with the files its repository keeps as
# symlinks into vendor/ (the module zip drops symlinks) restored from the
# modules they point to, at the versions MODULE's go.mod requires.
knative_src() {
  local mod=$1 ver dir src
  ver=$(cd "$root" && go list -m -f '{{.Version}}' "$mod")
  dir="$CACHE/src/$(basename "$mod")-$ver"
  if [ ! -f "$dir/.ready" ]; then
    src=$(cd "$root" && go mod download -json "$mod@$ver" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    rm -rf "$dir" && cp -r "$src" "$dir" && chmod -R u+w "$dir"
    rm -f "$dir/.ko.yaml"
    touch "$dir/.ready"
  fi
  echo "$dir"
}

# vendored DIR MODULE FILE: the path of FILE in MODULE at the version
# DIR's go.mod requires.
vendored() {
  local ver
  ver=$(cd "$1" && go list -m -f '{{.Version}}' "$2")
  echo "$(cd "$1" && go mod download -json "$2@$ver" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/$3"
}

build_serving() {
  local dir net
  dir=$(knative_src knative.dev/serving)
  cp "$(vendored "$dir" knative.dev/caching config/image.yaml)" "$dir/config/core/300-imagecache.yaml"
  for f in certificate domain-claim ingress serverlessservice; do
    cp "$(vendored "$dir" knative.dev/networking "config/$f.yaml")" "$dir/config/core/300-resources/$f.yaml"
  done
  cp "$(vendored "$dir" knative.dev/networking config/config-network.yaml)" "$dir/config/core/configmaps/network.yaml"
  # ko resolve as Knative's release does (hack/generate-yamls.sh).
  (cd "$dir" && KO_DOCKER_REPO="$REGISTRY/knative" KO_DEFAULTBASEIMAGE="$(ref base)" \
    ko resolve --sbom=none --platform=linux/amd64 -P -R -f config/core/) >"$IMAGES/serving-core.yaml.new"
  mv "$IMAGES/serving-core.yaml.new" "$IMAGES/serving-core.yaml"
  sed -n 's#^ *image: \(.*/knative.dev/serving/cmd/controller@.*\)#\1#p' "$IMAGES/serving-core.yaml" | head -n 1 >"$IMAGES/serving.ref"
}

build_eventing() {
  local dir
  dir=$(knative_src knative.dev/eventing)
  # The two ConfigMaps its repository links from third_party/ (the
  # controller reads their keys).
  for f in eventing-integrations-images eventing-transformations-images; do
    cp "$dir/third_party/eventing-integrations-latest/$f.yaml" "$dir/config/core/configmaps/$f.yaml"
  done
  # ko resolve as Knative's release does (hack/generate-yamls.sh): core,
  # then the channel and the broker, one YAML.
  (cd "$dir" && for f in config/core/ config/channels/in-memory-channel/ config/brokers/mt-channel-broker/; do
    KO_DOCKER_REPO="$REGISTRY/knative" KO_DEFAULTBASEIMAGE="$(ref base)" \
      ko resolve --sbom=none --platform=linux/amd64 -P -R -f "$f"
    echo "---"
  done) >"$IMAGES/eventing.yaml.new"
  mv "$IMAGES/eventing.yaml.new" "$IMAGES/eventing.yaml"
  sed -n 's#^ *image: \(.*/knative.dev/eventing/cmd/controller@.*\)#\1#p' "$IMAGES/eventing.yaml" | head -n 1 >"$IMAGES/eventing.ref"
}

want=${*:-base pause coredns traefik minio redis serving eventing}
for name in $want; do
  if fresh "$name" && case $name in serving) [ -s "$IMAGES/serving-core.yaml" ] ;; eventing) [ -s "$IMAGES/eventing.yaml" ] ;; esac; then
    echo "cluster: image $name cached"
    continue
  fi
  step "image $name" "build_$name"
done
