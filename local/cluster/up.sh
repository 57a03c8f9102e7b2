#!/usr/bin/env bash
# up.sh starts a single-node Kubernetes cluster with Knative Serving on
# this machine, without Docker or kind: Debian's containerd and runc, the
# Kubernetes components built from source (build.sh) as host processes,
# the images built with ko into a registry on loopback (images.sh), CNI
# bridge networking, kube-proxy (iptables), CoreDNS, Traefik as Knative's
# ingress with the base URL on 127.0.0.1:$KMEP_CLUSTER_PORT, and Knative
# Eventing (in-memory channel, multi-tenant channel-based Broker). It prints a
# line per step with the time it took, then waits until every node
# component and Knative Serving and Eventing are ready.
#
# Run as root from the repository root (make cluster-up). A second run
# reuses what is running and starts only what is not. down.sh stops it all.
# up.sh --preflight checks the prerequisites and ports only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

t0=$(date +%s)
PIDS=$STATE/pids
PKI=$STATE/pki
mkdir -p "$STATE" "$LOGS" "$PIDS" "$PKI"

# --- prerequisites ---------------------------------------------------------

preflight() {
  [ "$(id -u)" = 0 ] || die "must run as root (it runs containerd, the kubelet and kube-proxy)"
  local missing="" pair
  for pair in containerd:containerd runc:runc conntrack:conntrack iptables:iptables \
    openssl:openssl ip:iproute2 ss:iproute2 curl:curl redis-server:redis-server redis-cli:redis-tools \
    tar:tar go:"Go (https://go.dev/dl; /usr/local/go/bin on PATH)"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing\n  ${pair%%:*}: install ${pair#*:}"
  done
  [ -x "$CNI_BIN_DIR/bridge" ] && [ -x "$CNI_BIN_DIR/host-local" ] && [ -x "$CNI_BIN_DIR/portmap" ] && [ -x "$CNI_BIN_DIR/loopback" ] ||
    missing="$missing\n  $CNI_BIN_DIR/{bridge,host-local,portmap,loopback}: install containernetworking-plugins"
  [ -s /etc/ssl/certs/ca-certificates.crt ] || missing="$missing\n  /etc/ssl/certs/ca-certificates.crt: install ca-certificates"
  grep -qw overlay /proc/filesystems || missing="$missing\n  overlayfs: the kernel has no overlay filesystem (modprobe overlay)"
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || missing="$missing\n  bridge netfilter: modprobe br_netfilter"
  if [ -n "$missing" ]; then
    printf "cluster: missing prerequisites (apt-get install the packages named):$missing\n" >&2
    problems=1
  fi
}

# port_free PROTO ADDR PORT NAME [HINT]: fails naming who holds it. Ports
# are never moved silently.
port_free() {
  local who
  who=$(ss -H -lnp"$1" "sport = :$3" 2>/dev/null | awk -v a="$2" '$4 ~ ("^(" a "|0.0.0.0|\\*|\\[::\\]):")' | head -n 1)
  [ -z "$who" ] && return 0
  echo "cluster: port $3 ($4) is in use: $who${5:+; $5}" >&2
  problems=1
}

# --- processes -------------------------------------------------------------

running() { [ -s "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# start NAME CMD...: runs CMD in its own session, output to $LOGS/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

# wait_until NAME SECONDS CMD...: until CMD succeeds; else NAME's last log
# lines and its path.
wait_until() {
  local name=$1 limit=$2 i=0
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ -s "$PIDS/$name.pid" ] && ! running "$name"; then
      echo "cluster: $name exited" >&2
      tail -n 25 "$LOGS/$name.log" >&2
      echo "--- full log: $LOGS/$name.log" >&2
      return 1
    fi
    i=$((i + 1))
    if [ $i -gt $((limit * 5)) ]; then
      echo "cluster: $name not ready after ${limit}s" >&2
      [ -f "$LOGS/$name.log" ] && { tail -n 25 "$LOGS/$name.log" >&2; echo "--- full log: $LOGS/$name.log" >&2; }
      return 1
    fi
    sleep 0.2
  done
}

# component NAME READY-CHECK SECONDS CMD...: starts CMD unless NAME is
# running, then waits for READY-CHECK (a function name).
component() {
  local name=$1 check=$2 limit=$3
  shift 3
  if running "$name"; then
    printf 'cluster: %-44s reused\n' "$name ..."
  else
    step "start $name" start "$name" "$@"
  fi
  step "ready $name" wait_until "$name" "$limit" "$check"
}

# --- configuration ----------------------------------------------------------

network() {
  if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
    # A bridge with no ports stands in for a dummy interface (these
    # kernels have no dummy module).
    ip link add "$NODE_IF" type bridge
    ip addr add "$NODE_IP/32" dev "$NODE_IF"
    ip link set "$NODE_IF" up
  fi
  # Kept to give back in down.sh.
  if [ ! -f "$STATE/sysctl.orig" ]; then
    for k in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
      echo "$k=$(sysctl -n "$k")"
    done >"$STATE/sysctl.orig"
  fi
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  # /run/netns a shared mount point of its own before containerd mounts
  # the pods' namespaces there, as `ip netns add` makes it. Otherwise the
  # first `ip netns add` on the host (a test's namespaces) bind-mounts
  # /run/netns over itself, the pods' namespaces end up hidden under it,
  # and containerd can no longer remove one: a deleted pod stays
  # Terminating (seen with redis-0 while the tunnel tests ran).
  mkdir -p /run/netns
  mountpoint -q /run/netns || mount --bind /run/netns /run/netns
  mount --make-shared /run/netns
}

pki() {
  cd "$PKI"
  [ -f ca.key ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=kmep-cluster-ca"
  # cert NAME SUBJECT [SANs]: a key and a certificate signed by the CA.
  cert() {
    [ -f "$1.crt" ] && return 0
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\n' "$3" >"$1.ext"; else : >"$1.ext"; fi
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext"
  }
  cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:$APISERVER_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  [ -f sa.key ] || { openssl genrsa -out sa.key 2048 && openssl rsa -in sa.key -pubout -out sa.pub; }
  # One bearer token per identity, each with its Kubernetes user and groups.
  if [ ! -f tokens.csv ]; then
    tok() { openssl rand -hex 24; }
    {
      echo "$(tok),admin,admin,system:masters"
      echo "$(tok),system:kube-controller-manager,kube-controller-manager"
      echo "$(tok),system:kube-scheduler,kube-scheduler"
      echo "$(tok),system:node:$NODE_NAME,kubelet,system:nodes"
      echo "$(tok),system:kube-proxy,kube-proxy"
    } >tokens.csv
    chmod 600 tokens.csv
  fi
  local user token
  while IFS=, read -r token user _; do
    case $user in
    admin) f=admin ;; system:kube-controller-manager) f=controller-manager ;;
    system:kube-scheduler) f=scheduler ;; system:node:*) f=kubelet ;; system:kube-proxy) f=kube-proxy ;;
    esac
    cat >"$STATE/$f.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: kmep
    cluster:
      server: https://$NODE_IP:$APISERVER_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: $f
    user:
      token: $token
contexts:
  - name: kmep
    context: {cluster: kmep, user: $f}
current-context: kmep
EOF
    chmod 600 "$STATE/$f.kubeconfig"
  done <tokens.csv
}

# fill FILE: FILE with every @NAME@ replaced by $NAME.
fill() {
  local s
  s=$(cat "$1")
  for v in CNI_BIN_DIR PORT NODE_IP NODE_NAME POD_CIDR DNS_SERVICE_IP STATE CACHE REGISTRY REGISTRY_PORT PAUSE_IMAGE COREDNS_IMAGE TRAEFIK_IMAGE; do
    s=${s//@$v@/${!v:-}}
  done
  printf '%s\n' "$s"
}

# put FILE: standard input into FILE, unless FILE holds it already
# (kube-proxy exits when its configuration file changes).
put() {
  local tmp
  tmp=$(mktemp "$1.XXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

node_config() {
  mkdir -p "$STATE/containerd/certs.d" "$STATE/cni/net.d" "$CACHE/containerd"
  PAUSE_IMAGE=$(cat "$CACHE/images/pause.ref")
  fill "$here/node/containerd.toml" | put "$STATE/containerd/config.toml"
  # Pulls from the loopback registry, and of the public names manifests/
  # uses for Redis and MinIO from it too (images.sh pushes them there).
  for reg in "$REGISTRY" docker.io quay.io; do
    mkdir -p "$STATE/containerd/certs.d/$reg"
    printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
      "$REGISTRY" "$REGISTRY" | put "$STATE/containerd/certs.d/$reg/hosts.toml"
  done
  fill "$here/node/cni.conflist" | put "$STATE/cni/net.d/10-kmep.conflist"
  fill "$here/node/kubelet.yaml" | put "$STATE/kubelet.yaml"
  fill "$here/node/kube-proxy.yaml" | put "$STATE/kube-proxy.yaml"
}

# --- readiness checks -------------------------------------------------------

K() { kubectl --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
registry_ready() { curl -fsS "http://$REGISTRY/v2/"; }
etcd_ready() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { K get --raw /readyz; }
controller_manager_ready() { curl -fsSk https://127.0.0.1:10257/healthz; }
scheduler_ready() { curl -fsSk https://127.0.0.1:10259/healthz; }
containerd_ready() { crictl --runtime-endpoint "unix://$CONTAINERD_SOCK" info; }
kubelet_ready() { K get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
kube_proxy_ready() { curl -fsS http://127.0.0.1:10256/healthz; }

# --- add-ons ---------------------------------------------------------------

volumes() {
  K apply -f "$here/addons/storage.yaml"
  local i
  for i in $(seq 1 12); do
    mkdir -p "$STATE/volumes/pv$i" && chmod 0777 "$STATE/volumes/pv$i"
    cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-pv$i
  labels: {kmep.io/local-volume: "true"}
spec:
  storageClassName: local
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $STATE/volumes/pv$i, type: Directory}
---
EOF
  done | K apply -f -
}

coredns() {
  COREDNS_IMAGE=$(cat "$CACHE/images/coredns.ref")
  fill "$here/addons/coredns.yaml" | K apply -f -
  K rollout status deployment/coredns -n kube-system --timeout=180s
}

traefik() {
  local docs
  docs=$(go mod download -json "github.com/traefik/traefik/v3@v3.6.0" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/docs/content/reference/dynamic-configuration
  K apply --server-side -f "$docs/kubernetes-crd-definition-v1.yml"
  K apply -f "$docs/kubernetes-crd-rbac.yml" -f "$docs/kubernetes-knative-rbac.yml"
  TRAEFIK_IMAGE=$(cat "$CACHE/images/traefik.ref")
  fill "$here/addons/traefik.yaml" | K apply -f -
  K rollout status deployment/traefik -n traefik --timeout=180s
}

# crds FILE: FILE's CustomResourceDefinitions (applied first: kubectl
# cannot map the custom resources of the same file until they exist).
crds() {
  awk 'BEGIN { RS = "\n---[^\n]*\n" } /(^|\n)kind: CustomResourceDefinition\n/ { print $0; print "---" }' "$1"
}

# small_requests NAMESPACE: Knative's components ask for 100-300m of CPU
# each, more than two cores hold beside kmep; on this cluster they ask
# for 25m (they use less than that idle), which changes nothing on a
# second run.
small_requests() {
  K set resources deployment --all -n "$1" --requests=cpu=25m
  K set resources statefulset --all -n "$1" --requests=cpu=25m
}

serving() {
  local y=$CACHE/images/serving-core.yaml
  crds "$y" | K apply -f -
  K wait --for=condition=Established crd -l knative.dev/crd-install=true --timeout=60s
  K apply -f "$y"
  small_requests knative-serving
  K rollout status deployment -n knative-serving --timeout=300s
  # Traefik is the networking layer; ksvcs answer as NAME.NAMESPACE.localhost
  # (curl and browsers resolve *.localhost to loopback: with the base URL's
  # port, http://token.kmep.localhost:$PORT reaches a function directly).
  K patch configmap config-network -n knative-serving --type merge \
    -p '{"data":{"ingress-class":"traefik.ingress.networking.knative.dev"}}'
  K patch configmap config-domain -n knative-serving --type merge -p '{"data":{"localhost":""}}'
  K patch configmap config-deployment -n knative-serving --type merge \
    -p "{\"data\":{\"registries-skipping-tag-resolving\":\"kind.local,ko.local,dev.local,$REGISTRY\"}}"
}

serving_ready() {
  K wait --for=condition=Available deployment --all -n knative-serving --timeout=300s
}

eventing() {
  local y=$CACHE/images/eventing.yaml
  crds "$y" | K apply -f -
  K wait --for=condition=Established crd -l knative.dev/crd-install=true --timeout=60s
  K apply -f "$y"
  small_requests knative-eventing
  K wait --for=condition=Available deployment --all -n knative-eventing --timeout=300s
}

# --- main ------------------------------------------------------------------

# main is the whole run (a function, so that bash has read all of it
# before it starts: an edit of this file cannot change a run under way).
main() {
  problems=0
  preflight
  # The ports of what is not running yet (what runs is reused).
  running kube-apiserver || port_free t "$NODE_IP" "$APISERVER_PORT" kube-apiserver
  running etcd || port_free t 127.0.0.1 "$ETCD_PORT" etcd
  running registry || port_free t 127.0.0.1 "$REGISTRY_PORT" "the image registry" "free it or set KMEP_REGISTRY_PORT"
  running kubelet || port_free t "$NODE_IP" 10250 kubelet
  if ! running kubelet; then # Traefik is a pod on the node's network
    port_free t 127.0.0.1 "$PORT" "the base URL" "free it or set KMEP_CLUSTER_PORT"
    port_free t "$NODE_IP" 8081 "the ingress's internal entrypoint"
  fi
  [ "$problems" = 0 ] || exit 1
  if [ "${1:-}" = --preflight ]; then
    echo "cluster: prerequisites and ports ok"
    exit 0
  fi
  if ! running kube-apiserver; then
    # A new cluster: the last one's logs go, the state is marked as a
    # cluster's (down.sh cleans the machine only for a marked one).
    rm -rf "$LOGS" && mkdir -p "$LOGS"
  fi
  touch "$STATE/.cluster"
  step "build tools and kube (once per machine)" "$here/build.sh" tools kube
  step "node network ($NODE_IF $NODE_IP)" network
  mkdir -p "$STATE/registry"
  fill "$here/node/registry.yaml" | put "$STATE/registry/config.yml"
  component registry registry_ready 30 registry serve "$STATE/registry/config.yml"
  "$here/images.sh"
  node_config
  step "certificates and kubeconfigs" pki
  component etcd etcd_ready 60 etcd --name kmep --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster kmep=http://127.0.0.1:2380 --log-level warn
  component kube-apiserver apiserver_ready 90 kube-apiserver \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
    --advertise-address="$NODE_IP" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
    --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false \
    --kubelet-preferred-address-types=InternalIP
  component kube-controller-manager controller_manager_ready 60 kube-controller-manager \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true --leader-elect=false --service-cluster-ip-range="$SERVICE_CIDR" \
    --profiling=false
  component kube-scheduler scheduler_ready 60 kube-scheduler --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
  component containerd containerd_ready 60 containerd --config "$STATE/containerd/config.toml"
  component kubelet kubelet_ready 120 kubelet --config="$STATE/kubelet.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki"
  component kube-proxy kube_proxy_ready 60 kube-proxy --config="$STATE/kube-proxy.yaml"
  step "storage (StorageClass local, 12 volumes)" volumes
  step "CoreDNS" coredns
  step "Traefik (Knative ingress, base URL 127.0.0.1:$PORT)" traefik
  step "Knative Serving" serving
  step "Knative Serving ready" serving_ready
  step "Knative Eventing (in-memory channel, MT broker)" eventing
  echo "cluster: up in $(($(date +%s) - t0))s; eval \"\$(make -s cluster-env)\" for KUBECONFIG, KUBECTL, KMEP_URL"

}

main "$@"
exit
