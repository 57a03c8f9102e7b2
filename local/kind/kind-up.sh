#!/bin/sh
# kind-up.sh creates the kind cluster KIND_CLUSTER_NAME (knative) with
# Knative Serving (Kourier ingress, sslip.io domain: the functions answer
# on http://NAME.kmep.127.0.0.1.sslip.io) and Eventing (in-memory channel,
# the MT channel-based broker), using the kn quickstart plugin.
set -eu
: "${KIND_CLUSTER_NAME:=knative}"
for tool in docker kind kn kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not on PATH" >&2; exit 1; }
done
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER_NAME"; then
  echo "kind-up: cluster $KIND_CLUSTER_NAME exists"
else
  kn quickstart kind --name "$KIND_CLUSTER_NAME"
fi
kubectl config use-context "kind-$KIND_CLUSTER_NAME"
kubectl wait --for=condition=Available deployment --all -n knative-serving --timeout=300s
kubectl wait --for=condition=Available deployment --all -n knative-eventing --timeout=300s
