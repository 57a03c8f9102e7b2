#!/usr/bin/env bash
# env.sh prints shell exports for the running local cluster:
#   eval "$(make -s cluster-env)"
# KUBECONFIG (the admin's), KUBECTL (the kubectl built with the cluster),
# KMEP_URL (the base URL), the cluster's state and cache directories and,
# once make deploy has run, KMEP_ADMIN_TOKEN.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
[ -s "$STATE/admin.kubeconfig" ] || die "no local cluster (make cluster-up)"
echo "export KUBECONFIG=$STATE/admin.kubeconfig"
echo "export KUBECTL=$BIN/kubectl"
echo "export KMEP_URL=http://127.0.0.1:$PORT"
echo "export KMEP_CLUSTER_STATE=$STATE"
echo "export KMEP_CLUSTER_CACHE=$CACHE"
tok=$("$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" get secret kmep-secrets -n kmep \
  -o jsonpath='{.data.KMEP_ADMIN_TOKEN}' 2>/dev/null | base64 -d) || true
if [ -n "$tok" ]; then echo "export KMEP_ADMIN_TOKEN=$tok"; else echo "# KMEP_ADMIN_TOKEN: not deployed yet (make deploy)"; fi
