#!/usr/bin/env bash
# down.sh stops the local cluster (up.sh) and leaves none of its
# processes, mounts, network namespaces, interfaces or iptables rules
# behind; the sysctls up.sh changed get their earlier values back. The
# cluster's state (etcd, certificates, the kubelet's directory) is removed;
# the builds, the registry and containerd's image store (the cache) and
# the last logs are kept. Safe to run twice, or after a failed up.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
PIDS=$STATE/pids

[ "$(id -u)" = 0 ] || die "must run as root"
# up.sh marks the state directory it starts in; what the machine holds
# (interfaces, iptables, /run/kmep) is only cleaned for a marked one, so
# a down.sh for another state directory never touches a running cluster.
if [ ! -f "$STATE/.cluster" ]; then
  echo "cluster: down (no cluster was started with state $STATE)"
  exit 0
fi

# stop NAME: SIGTERM, up to 10 s, then SIGKILL.
stop() {
  local pid i
  [ -s "$PIDS/$1.pid" ] || return 0
  pid=$(cat "$PIDS/$1.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
    echo "cluster: stopped $1"
  fi
  rm -f "$PIDS/$1.pid"
}

crictl_() { crictl --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 20s "$@"; }

# The kubelet first, so it starts nothing again; then every pod through
# the CRI, so CNI takes down each pod's interface, address and rules.
stop kubelet
if [ -S "$CONTAINERD_SOCK" ] && command -v crictl >/dev/null; then
  pods=$(crictl_ pods -q 2>/dev/null)
  if [ -n "$pods" ]; then
    echo "cluster: removing $(echo "$pods" | wc -l) pods"
    for p in $pods; do crictl_ stopp "$p" >/dev/null 2>&1; crictl_ rmp -f "$p" >/dev/null 2>&1; done
  fi
fi
stop kube-proxy
if [ -x "$BIN/kube-proxy" ]; then
  "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
stop containerd
# Whatever containerd left running: its shims and their containers.
for pid in $(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
if [ -d /run/kmep/runc ]; then
  for c in $(runc --root /run/kmep/runc list -q 2>/dev/null); do
    runc --root /run/kmep/runc kill "$c" KILL 2>/dev/null
    runc --root /run/kmep/runc delete -f "$c" 2>/dev/null
  done
fi
for c in kube-scheduler kube-controller-manager kube-apiserver etcd registry; do stop "$c"; done

# Mounts under the cluster's directories, deepest first.
for dir in "$STATE" /run/kmep "$CACHE/containerd"; do
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null && echo "cluster: unmounted $m"
  done
done
# Network namespaces of pods whose teardown failed (containerd names them cni-*).
delete_netns() {
  local ns
  for ns in /run/netns/cni-*; do
    [ -e "$ns" ] || continue
    ip netns delete "$(basename "$ns")" 2>/dev/null && echo "cluster: deleted netns $(basename "$ns")"
  done
}
delete_netns
# containerd mounts a pod's namespace on /run/netns/cni-* as it finds the
# directory. When something (ip netns add, a test's namespaces) then
# bind-mounts /run/netns over itself, those mounts are hidden under it:
# the names cannot be unmounted ("not mounted") nor removed (busy). Lift
# the bind mount(s) once and delete again.
netns_bound() { awk '$5 == "/run/netns" {found=1} END {exit !found}' /proc/self/mountinfo; }
if ls /run/netns/cni-* >/dev/null 2>&1 && netns_bound; then
  while netns_bound; do
    umount -l /run/netns || break
  done
  echo "cluster: lifted the bind mount over /run/netns that hid the pods' namespaces"
  delete_netns
fi
for ifc in kmep-br0 "$NODE_IF"; do
  ip link show "$ifc" >/dev/null 2>&1 && ip link delete "$ifc" && echo "cluster: deleted interface $ifc"
done

# iptables: the chains the kubelet, kube-proxy and CNI made (KUBE-*,
# CNI-*), with the rules that jump to them from the built-in chains.
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  for table in filter nat mangle; do
    rules=$("$ipt-save" -t "$table" 2>/dev/null) || continue
    # Jumps from built-in chains to ours, removed by their exact spec.
    echo "$rules" | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE-|CNI-)' | while read -r r; do
      eval "$ipt -t $table -D ${r#-A }" 2>/dev/null
    done
    chains=$(echo "$rules" | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p')
    for c in $chains; do "$ipt" -t "$table" -F "$c" 2>/dev/null; done
    for c in $chains; do "$ipt" -t "$table" -X "$c" 2>/dev/null; done
    [ -n "$chains" ] && echo "cluster: removed $(echo "$chains" | wc -w) $ipt $table chains"
  done
done

if [ -f "$STATE/sysctl.orig" ]; then
  while read -r kv; do sysctl -qw "$kv" 2>/dev/null; done <"$STATE/sysctl.orig"
fi

# The state, but the last logs (kept for a look after the fact); the
# marker last.
find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs ! -name .cluster -exec rm -rf {} +
rm -f "$STATE/.cluster"
rm -rf /run/kmep
echo "cluster: down"
