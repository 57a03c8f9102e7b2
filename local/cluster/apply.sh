#!/usr/bin/env bash
# apply.sh FILE...: applies YAML files (or directories) to the local
# cluster as deploy.sh applies manifests/: every ko:// image is built with
# ko onto the local base image and pushed to the loopback registry. make
# e2e applies its test pods (local/cluster/e2e/testdata) with it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
[ $# -gt 0 ] || die "usage: apply.sh FILE..."
[ -s "$STATE/admin.kubeconfig" ] || die "no local cluster (make cluster-up)"
export KUBECONFIG=$STATE/admin.kubeconfig
cd "$root"
ko_resolve "$@" | kubectl apply -f -
