#!/usr/bin/env bash
# deploy.sh applies manifests/ to the local cluster (up.sh) as a user
# applies them: ko resolves every ko:// image (built onto the local base
# image, pushed to the loopback registry), the Secrets are made once by
# local/kind/secrets.sh and kept, Redis and MinIO come under their public
# names from the loopback registry (images.sh). Then it waits for every
# StatefulSet, Knative Service, Deployment and DaemonSet to be Ready.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
t0=$(date +%s)
[ -s "$STATE/admin.kubeconfig" ] || die "no local cluster (make cluster-up)"
export KUBECONFIG=$STATE/admin.kubeconfig
cd "$root"

secrets() {
  kubectl apply -f manifests/00-namespace.yaml
  if kubectl get secret kmep-secrets -n kmep >/dev/null 2>&1; then
    echo "kept the existing Secrets"
  else
    sh local/kind/secrets.sh | kubectl apply -f -
  fi
}

resolve() {
  KO_DOCKER_REPO="$REGISTRY/kmep" KO_DEFAULTBASEIMAGE="$(cat "$CACHE/images/base.ref")" GOFLAGS= \
    ko resolve --sbom=none --platform=linux/amd64 -P -f manifests/ >"$STATE/kmep.yaml.new"
  mv "$STATE/kmep.yaml.new" "$STATE/kmep.yaml"
}

apply() { kubectl apply -f "$STATE/kmep.yaml"; }

ready() {
  kubectl rollout status statefulset --timeout=300s -n kmep
  kubectl wait ksvc --all -n kmep --for=condition=Ready --timeout=300s
  kubectl rollout status deployment --timeout=300s -n kmep
  kubectl rollout status daemonset --timeout=300s -n kmep
}

step "namespace and Secrets" secrets
step "ko resolve manifests/ (images)" resolve
step "apply" apply
step "ready (statefulsets, ksvcs, deployments)" ready
kubectl get ksvc -n kmep
echo "deploy: done in $(($(date +%s) - t0))s"
