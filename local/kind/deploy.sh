#!/bin/sh
# deploy.sh builds every image with ko (KO_DOCKER_REPO=kind.local loads
# them into the kind cluster KIND_CLUSTER_NAME) and applies manifests/.
# The Secrets are created once with fresh values (secrets.sh) and then
# kept. Run from the repository root.
set -eu
: "${KO_DOCKER_REPO:=kind.local}"
: "${KIND_CLUSTER_NAME:=knative}"
export KO_DOCKER_REPO KIND_CLUSTER_NAME
kubectl apply -f manifests/00-namespace.yaml
kubectl get secret kmep-secrets -n kmep >/dev/null 2>&1 || sh local/kind/secrets.sh | kubectl apply -f -
ko apply -f manifests/
kubectl rollout status statefulset/redis statefulset/minio -n kmep --timeout=300s
kubectl wait ksvc --all -n kmep --for=condition=Ready --timeout=300s
kubectl rollout status deployment/relay deployment/reaper deployment/upfagent -n kmep --timeout=300s
kubectl get ksvc -n kmep
