# lib.sh: what the cluster scripts share (sourced, not run): the cache
# and state paths, the progress line of a step, failing with a log.
#
#   KMEP_CLUSTER_CACHE   builds and images (default ~/.cache/kmep/cluster)
#   KMEP_CLUSTER_STATE   the running cluster (default $KMEP_CLUSTER_CACHE/run)
#   KMEP_CLUSTER_PORT    the base URL's port on 127.0.0.1 (default 8080)
#   KMEP_REGISTRY_PORT   the image registry's port on 127.0.0.1 (default 5001)
#   CNI_BIN_DIR          the CNI plugins (default /usr/lib/cni, Debian's)
CACHE=${KMEP_CLUSTER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kmep/cluster}
TESTBIN=${KMEP_TESTBIN:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kmep/testbin}
BIN=$CACHE/bin
STATE=${KMEP_CLUSTER_STATE:-$CACHE/run}
LOGS=$STATE/logs
PORT=${KMEP_CLUSTER_PORT:-8080}
REGISTRY_PORT=${KMEP_REGISTRY_PORT:-5001}
REGISTRY=127.0.0.1:$REGISTRY_PORT
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
export PATH="$BIN:$PATH"

# The node's own address: on an interface of the cluster's own (a bridge
# without ports, made by up.sh, removed by down.sh), so nothing depends on
# the host's network.
NODE_IF=kmep0
NODE_IP=10.213.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
APISERVER_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
NODE_NAME=kmep
CONTAINERD_SOCK=/run/kmep/containerd/containerd.sock
APISERVER_PORT=6443
ETCD_PORT=2379

die() { echo "cluster: $*" >&2; exit 1; }

# step NAME CMD...: runs CMD with its output in $LOGS/NAME.log (spaces in
# NAME become -), then prints one line: what, ok or FAILED, seconds. On
# failure the log's last lines and its path, and exit 1.
step() {
  local name=$1 log start rc
  shift
  mkdir -p "$LOGS"
  log="$LOGS/$(echo "$name" | tr ' /' '--').log"
  start=$(date +%s)
  printf 'cluster: %-44s ' "$name ..."
  set +e
  (set -e; "$@") >"$log" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    printf 'ok (%ds)\n' $(($(date +%s) - start))
    return 0
  fi
  printf 'FAILED (%ds)\n' $(($(date +%s) - start))
  echo "--- last lines of $log:" >&2
  tail -n 25 "$log" >&2
  echo "--- full log: $log" >&2
  exit 1
}

# ko_resolve FILE...: prints the YAML of FILE(s) (files or directories)
# with every ko:// image built onto the local base image and pushed to the
# loopback registry (by digest), as deploy.sh applies manifests/.
ko_resolve() {
  local f args=()
  for f in "$@"; do args+=(-f "$f"); done
  KO_DOCKER_REPO="$REGISTRY/kmep" KO_DEFAULTBASEIMAGE="$(cat "$CACHE/images/base.ref")" GOFLAGS= \
    ko resolve --sbom=none --platform=linux/amd64 -P "${args[@]}"
}
