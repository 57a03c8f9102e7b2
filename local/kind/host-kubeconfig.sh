#!/bin/sh
# host-kubeconfig.sh registers this very cluster as a MEC host, so that
# instantiate installs apps here: it writes a kubeconfig for the
# ServiceAccount kmep-deployer (manifests/rbac.yaml: namespaces get/create,
# the chart kinds and Helm's Secrets in mec-apps only) that reaches the API
# server from inside the cluster, and POSTs it to the packages function
# (a host already registered under that IP gets it by PUT instead).
#
#   sh local/kind/host-kubeconfig.sh [MEC_HOST_IP]   (default 10.0.0.1)
#   KMEP_URL=http://127.0.0.1:8080 sh local/kind/host-kubeconfig.sh 10.213.0.1
#                                  (the local cluster: make cluster-env)
#
# Needs kubectl, curl, jq. Run from the repository root.
set -eu
HOST_IP=${1:-10.0.0.1}
secret() { kubectl get secret kmep-deployer-token -n kmep -o jsonpath="{.data.$1}" | base64 -d; }
CA=$(kubectl get secret kmep-deployer-token -n kmep -o jsonpath='{.data.ca\.crt}')
TOKEN=$(secret token)
KUBECONFIG_TEXT=$(cat <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: this-cluster
    cluster:
      server: https://kubernetes.default.svc
      certificate-authority-data: $CA
users:
  - name: kmep-deployer
    user:
      token: $TOKEN
contexts:
  - name: kmep-deployer@this-cluster
    context:
      cluster: this-cluster
      user: kmep-deployer
      namespace: mec-apps
current-context: kmep-deployer@this-cluster
YAML
)
# The packages function: through the base URL KMEP_URL when set (the local
# cluster's), else its Knative Service's own URL (kind's).
PACKAGES_URL=${KMEP_URL:-$(kubectl get ksvc packages -n kmep -o jsonpath='{.status.url}')}
ADMIN=$(kubectl get secret kmep-secrets -n kmep -o jsonpath='{.data.KMEP_ADMIN_TOKEN}' | base64 -d)
BODY=$(jq -n --arg ip "$HOST_IP" --arg kc "$KUBECONFIG_TEXT" '{mechostIp: $ip, mechostName: "this-cluster", city: "", kubeconfig: $kc}')
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
host() { # METHOD URL: the status code; the answer in $OUT
  printf '%s' "$BODY" | curl -sS -o "$OUT" -w '%{http_code}' -X "$1" "$2" \
    -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' --data-binary @-
}
CODE=$(host POST "$PACKAGES_URL/lcmcontroller/v1/hosts")
# Registered already (a second run): its kubeconfig is replaced.
[ "$CODE" = 409 ] && CODE=$(host PUT "$PACKAGES_URL/lcmcontroller/v1/hosts/$HOST_IP")
cat "$OUT"
echo
case $CODE in
2??) ;;
*) echo "host-kubeconfig.sh: HTTP $CODE" >&2; exit 1 ;;
esac
