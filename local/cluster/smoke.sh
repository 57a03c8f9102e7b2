#!/usr/bin/env bash
# smoke.sh runs the README walkthrough against a deployed kmep and exits
# non-zero at the first unexpected answer, printing it:
#   - Mm5: provision an app's AK/SK;
#   - the token, EdgeGallery mep-agent style (AK/SK signed POST /mep/token);
#   - register a service, discover it, heartbeat it (PATCH, and PUT as
#     EdgeGallery's mep-agent does), read its liveness;
#   - a subscription, the app's DNS rules set over Mm5 and read over Mp1,
#     the MEC hosts, an unknown app instance (a ProblemDetails 404);
#   - deregister, and terminate the app.
# Every path goes to one base URL, KMEP_URL (default: the local cluster's,
# http://127.0.0.1:$KMEP_CLUSTER_PORT). With KMEP_SMOKE_KSVC_URLS=1 (the
# kind path) each function's own URL from `kubectl get ksvc` is used
# instead. KMEP_ADMIN_TOKEN defaults to the cluster's kmep-secrets.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
cd "$root"
[ -z "${KUBECONFIG:-}" ] && [ -s "$STATE/admin.kubeconfig" ] && export KUBECONFIG=$STATE/admin.kubeconfig

if [ "${KMEP_SMOKE_KSVC_URLS:-}" = 1 ]; then
  url() { kubectl get ksvc "$1" -n kmep -o jsonpath='{.status.url}'; }
  TOKEN_URL=$(url token) SERVICES_URL=$(url services) SUBS_URL=$(url subscriptions)
  LCM_URL=$(url lcm) APPSUPPORT_URL=$(url appsupport) PACKAGES_URL=$(url packages) INSTANTIATE_URL=$(url instantiate)
else
  base=${KMEP_URL:-http://127.0.0.1:$PORT}
  TOKEN_URL=$base SERVICES_URL=$base SUBS_URL=$base LCM_URL=$base APPSUPPORT_URL=$base PACKAGES_URL=$base INSTANTIATE_URL=$base
fi
ADMIN=${KMEP_ADMIN_TOKEN:-$(kubectl get secret kmep-secrets -n kmep -o jsonpath='{.data.KMEP_ADMIN_TOKEN}' | base64 -d)}
go build -o bin/kmepctl ./local/cmd/kmepctl
eval "$(bin/kmepctl keygen)"
APP=smoke-$(date +%s)-$$
out=$(mktemp)
trap 'rm -f "$out" "$out.h"' EXIT

check() { # expected-status description curl-args...
  local want=$1 what=$2 got
  shift 2
  got=$(curl -sS --max-time 30 -o "$out" -D "$out.h" -w '%{http_code}' "$@") || got="curl failed ($?)"
  if [ "$got" != "$want" ]; then
    echo "smoke: $what: HTTP $got, want $want" >&2
    cat "$out" >&2
    echo >&2
    exit 1
  fi
  echo "ok  $what ($got)"
}
body_has() { grep -q "$1" "$out" || { echo "smoke: $2: the answer lacks $1:" >&2; cat "$out" >&2; exit 1; }; }

check 201 "Mm5: provision $APP's AK/SK" -X PUT "$TOKEN_URL/mep/appMng/v1/applications/$APP/confs" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d "{\"authInfo\":{\"credentials\":{\"accessKeyId\":\"$AK\",\"secretKey\":\"$SK\"}},\"appInfo\":{\"appName\":\"smoke\",\"requiredServices\":[]}}"

# The token as EdgeGallery's mep-agent asks for it: an AK/SK-signed POST.
eval "$(bin/kmepctl sign --ak "$AK" --sk "$SK" --url "$TOKEN_URL/mep/token")"
check 200 "token (AK/SK signed request)" -X POST "$TOKEN_URL/mep/token" \
  -H "x-sdk-date: $KMEP_SDK_DATE" -H "Authorization: $KMEP_AUTHORIZATION"
body_has access_token "token"
TOKEN=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$out")

check 201 "register a service" -X POST "$SERVICES_URL/mep/mec_service_mgmt/v1/applications/$APP/services" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"serName":"smoke-svc","version":"1.0","state":"ACTIVE","serializer":"JSON","livenessInterval":10,
       "transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"1.1",
                        "endpoint":{"addresses":[{"host":"10.0.0.5","port":8080}]},"security":{}}}'
SERVICE=$(sed -n 's/^[Ll]ocation: *//p' "$out.h" | tr -d '\r')
SERID=${SERVICE##*/}
[ -n "$SERID" ] || { echo "smoke: registration gave no Location" >&2; exit 1; }
# The Location is the function's own view of its URL; the base URL is
# what the app uses.
SERVICE=$SERVICES_URL/mep/mec_service_mgmt/v1/applications/$APP/services/$SERID
check 200 "discover it" "$SERVICES_URL/mep/mec_service_mgmt/v1/services?ser_name=smoke-svc" -H "Authorization: Bearer $TOKEN"
body_has "$SERID" "discovery"
check 204 "heartbeat (PATCH)" -X PATCH "$SERVICE/liveness" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"state":"ACTIVE"}'
check 204 "heartbeat (PUT, EdgeGallery mep-agent)" -X PUT "$SERVICE/liveness" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"state":"ACTIVE"}'
check 200 "read the liveness" "$SERVICE/liveness" -H "Authorization: Bearer $TOKEN"
body_has ACTIVE "liveness"

check 201 "subscribe to its availability (subscriptions)" -X POST \
  "$SUBS_URL/mep/mec_service_mgmt/v1/applications/$APP/subscriptions" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://198.51.100.7/notify","filteringCriteria":{"serNames":["smoke-svc"]}}'
check 200 "list the subscriptions" "$SUBS_URL/mep/mec_service_mgmt/v1/applications/$APP/subscriptions" \
  -H "Authorization: Bearer $TOKEN"

check 201 "Mm5: set the app's DNS rules (lcm)" -X POST "$LCM_URL/mepcfg/app_lcm/v1/applications/$APP/appd_configuration" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"appName":"smoke","appSupportMp1":true,"appTrafficRule":[],
       "appDNSRule":[{"dnsRuleId":"dns-1","domainName":"smoke.example","ipAddressType":"IP_V4","ipAddress":"10.0.0.5","ttl":30}]}'
check 200 "Mp1: read them (appsupport)" "$APPSUPPORT_URL/mep/mec_app_support/v1/applications/$APP/dns_rules" \
  -H "Authorization: Bearer $TOKEN"
body_has smoke.example "dns_rules"
check 200 "list MEC hosts (packages)" "$PACKAGES_URL/lcmcontroller/v1/hosts" -H "Authorization: Bearer $ADMIN"
check 404 "an unknown app instance (instantiate)" \
  "$INSTANTIATE_URL/lcmcontroller/v1/tenants/t1/app_instances/no-such-instance" -H "Authorization: Bearer $ADMIN"
body_has '"status":404' "unknown app instance"

check 204 "deregister" -X DELETE "$SERVICE" -H "Authorization: Bearer $TOKEN"
check 401 "lcm refuses a call without the admin token" -X POST "$LCM_URL/mepcfg/app_lcm/v1/applications/$APP/terminate" -d '{}'
check 200 "terminate the app" -X POST "$LCM_URL/mepcfg/app_lcm/v1/applications/$APP/terminate" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"gracefulTimeout":0}'
echo "smoke: all passed"
