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

# The apps this cluster instantiates (into itself: host-kubeconfig.sh)
# reach the platform through its cluster-internal base URL, Traefik's
# internal entrypoint: kmep-config's KMEP_MEP_URL (empty in manifests/).
MEP_URL=http://traefik-internal.traefik.svc.cluster.local

resolve() {
  ko_resolve manifests/ >"$STATE/kmep.yaml.new"
  sed -E -i "s#^(\s*KMEP_MEP_URL:)\s*(\"\"|'')\s*\$#\1 $MEP_URL#" "$STATE/kmep.yaml.new"
  grep -q "KMEP_MEP_URL: $MEP_URL\$" "$STATE/kmep.yaml.new" || die "manifests/config.yaml has no empty KMEP_MEP_URL to set"
  mv "$STATE/kmep.yaml.new" "$STATE/kmep.yaml"
}

apply() { kubectl apply -f "$STATE/kmep.yaml"; }

ready() {
  kubectl rollout status statefulset --timeout=300s -n kmep
  kubectl wait ksvc --all -n kmep --for=condition=Ready --timeout=300s
  kubectl rollout status deployment --timeout=300s -n kmep
  kubectl rollout status daemonset --timeout=300s -n kmep
}

# eventing_ready waits until the Broker, every Trigger and every
# SinkBinding of the namespace is Ready; one that is not within
# $KMEP_DEPLOY_EVENTING_TIMEOUT (120 s) fails the deploy, named with its
# Ready condition (reason: message), e.g. a Trigger whose Broker or
# subscriber does not exist.
eventing_ready() {
  local deadline=$(($(date +%s) + ${KMEP_DEPLOY_EVENTING_TIMEOUT:-120})) bad
  while :; do
    bad=$(for kind in broker trigger sinkbinding; do
      kubectl get "$kind" -n kmep -o go-template="$(cat <<'TPL'
{{- range .items}}{{$ready := "Unknown"}}{{$why := "no Ready condition: not reconciled yet"}}
{{- range .status.conditions}}{{if eq .type "Ready"}}{{$ready = .status}}{{$why = printf "%s: %s" (or .reason "") (or .message "")}}{{end}}{{end}}
{{- if ne $ready "True"}}{{$.kind}} {{.metadata.name}}: Ready={{$ready}} ({{$why}}){{with .spec.broker}} on Broker {{.}}{{end}}{{"\n"}}{{end}}
{{- end}}
TPL
)" | sed "s/^List /$kind /"
    done)
    [ -z "$bad" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "deploy: not Ready in namespace kmep:" >&2
      echo "$bad" | while read -r l; do
        b=$(echo "$l" | sed -n 's/.* on Broker \(.*\)$/\1/p')
        if [ -n "$b" ] && ! kubectl get broker "$b" -n kmep >/dev/null 2>&1; then l="$l, which does not exist"; fi
        echo "  $l"
      done >&2
      return 1
    fi
    sleep 2
  done
}

step "namespace and Secrets" secrets
step "ko resolve manifests/ (images)" resolve
step "apply" apply
step "ready (statefulsets, ksvcs, deployments)" ready
if ! eventing_ready 2>"$STATE/eventing-ready.err"; then
  cat "$STATE/eventing-ready.err" >&2
  die "Knative Eventing objects not Ready (above): make deploy failed"
fi
echo "deploy: Broker, Triggers and SinkBindings Ready"
kubectl get ksvc -n kmep
echo "deploy: done in $(($(date +%s) - t0))s"
