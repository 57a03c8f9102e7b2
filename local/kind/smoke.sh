#!/bin/sh
# smoke.sh runs the README's walkthrough against the functions deployed in
# the cluster (make deploy): provision an app's AK/SK, get a token,
# register a service, discover it, heartbeat, deregister; then the admin
# APIs (APPD configuration, MEC hosts). Each function has its own URL
# (kubectl get ksvc -n kmep). Exits non-zero at the first unexpected answer.
# Needs kubectl, curl, go (for kmepctl). Run from the repository root.
set -eu
url() { kubectl get ksvc "$1" -n kmep -o jsonpath='{.status.url}'; }
TOKEN_URL=$(url token)
SERVICES_URL=$(url services)
LCM_URL=$(url lcm)
APPSUPPORT_URL=$(url appsupport)
PACKAGES_URL=$(url packages)
ADMIN=$(kubectl get secret kmep-secrets -n kmep -o jsonpath='{.data.KMEP_ADMIN_TOKEN}' | base64 -d)
go build -o bin/kmepctl ./local/cmd/kmepctl
eval "$(bin/kmepctl keygen)"
APP=smoke-$(date +%s)
check() { # expected-status description curl-args...
  want=$1; what=$2; shift 2
  got=$(curl -sS -o /tmp/kmep-smoke.out -w '%{http_code}' "$@")
  if [ "$got" != "$want" ]; then
    echo "smoke: $what: HTTP $got, want $want" >&2; cat /tmp/kmep-smoke.out >&2; exit 1
  fi
  echo "ok  $what ($got)"
}

check 201 "provision $APP's AK/SK (Mm5)" -X PUT "$TOKEN_URL/mep/appMng/v1/applications/$APP/confs" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d "{\"authInfo\":{\"credentials\":{\"accessKeyId\":\"$AK\",\"secretKey\":\"$SK\"}},\"appInfo\":{\"appName\":\"smoke\",\"requiredServices\":[]}}"
TOKEN=$(bin/kmepctl token --ak "$AK" --sk "$SK" --url "$TOKEN_URL/mep/token")
echo "ok  token"
check 201 "register a service" -X POST "$SERVICES_URL/mep/mec_service_mgmt/v1/applications/$APP/services" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -D /tmp/kmep-smoke.headers \
  -d '{"serName":"smoke-svc","version":"1.0","state":"ACTIVE","serializer":"JSON","livenessInterval":10,
       "transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"1.1",
                        "endpoint":{"addresses":[{"host":"10.0.0.5","port":8080}]},"security":{}}}'
SERVICE=$(sed -n 's/^[Ll]ocation: *//p' /tmp/kmep-smoke.headers | tr -d '\r')
check 200 "discover it" "$SERVICES_URL/mep/mec_service_mgmt/v1/services?ser_name=smoke-svc" -H "Authorization: Bearer $TOKEN"
grep -q smoke-svc /tmp/kmep-smoke.out || { echo "smoke: discovery did not return smoke-svc" >&2; exit 1; }
check 204 "heartbeat" -X PATCH "$SERVICE/liveness" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"state":"ACTIVE"}'
check 200 "read dns_rules (appsupport)" "$APPSUPPORT_URL/mep/mec_app_support/v1/applications/$APP/dns_rules" \
  -H "Authorization: Bearer $TOKEN"
check 204 "deregister" -X DELETE "$SERVICE" -H "Authorization: Bearer $TOKEN"
check 401 "lcm refuses no admin token" -X POST "$LCM_URL/mepcfg/app_lcm/v1/applications/$APP/terminate" -d '{}'
check 200 "list MEC hosts (packages)" "$PACKAGES_URL/lcmcontroller/v1/hosts" -H "Authorization: Bearer $ADMIN"
echo "smoke: all passed"
