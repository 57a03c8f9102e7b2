#!/bin/sh
# deploy-kn.sh deploys kmep with the kn CLI instead of `ko apply`: the
# images are built with `ko build` and each function is deployed with
# `kn service apply`, its settings as flags. It is the way to deploy or
# update one function by hand: copy its command. The flags mirror
# manifests/functions.yaml and manifests/triggers.yaml (env names and
# sources, annotations, scale bounds, concurrency, probes, resources,
# labels); local/kind's test fails when the two disagree.
#
# What kn cannot say is taken from Knative's defaults or other objects:
# enableServiceLinks (Knative's default is false), the containers'
# securityContext (enable secure-pod-defaults in config-features, or use
# the manifests), and per-Trigger delivery (kn trigger has no delivery
# flags: the Broker's delivery below, the same as the manifests'
# Triggers', applies). The agents are not Knative Services: they are
# applied with ko.
#
# Needs kubectl, kn, ko; KO_DOCKER_REPO (kind.local: images are loaded
# into the kind cluster KIND_CLUSTER_NAME, default knative). Run from the
# repository root.
set -eu
: "${KO_DOCKER_REPO:=kind.local}"
: "${KIND_CLUSTER_NAME:=knative}"
export KO_DOCKER_REPO KIND_CLUSTER_NAME

kubectl apply -f manifests/00-namespace.yaml -f manifests/config.yaml -f manifests/rbac.yaml \
  -f manifests/redis.yaml -f manifests/minio.yaml
kubectl get secret kmep-secrets -n kmep >/dev/null 2>&1 || sh local/kind/secrets.sh | kubectl apply -f -

# The functions (manifests/functions.yaml) and the event receivers (manifests/triggers.yaml).
kn service apply token -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/token/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=token \
  --scale-min 2 \
  --scale-max 10 \
  --concurrency-target 100 \
  --concurrency-limit 0 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ENCRYPTION_KEY=secret:kmep-secrets:KMEP_ENCRYPTION_KEY \
  --env-value-from KMEP_TOKEN_SIGNING_KEY=secret:kmep-secrets:KMEP_TOKEN_SIGNING_KEY \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env-value-from KMEP_TRUSTED_PROXIES=cm:kmep-config:KMEP_TRUSTED_PROXIES \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=128Mi
kn service apply services -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/services/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=services \
  --scale-min 2 \
  --scale-max 20 \
  --concurrency-target 200 \
  --concurrency-limit 0 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=256Mi
kn service apply subscriptions -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/subscriptions/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=subscriptions \
  --scale-min 0 \
  --scale-max 3 \
  --concurrency-target 100 \
  --concurrency-limit 0 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_CALLBACK_ALLOW=cm:kmep-config:KMEP_CALLBACK_ALLOW \
  --env-value-from KMEP_CALLBACK_DENY=cm:kmep-config:KMEP_CALLBACK_DENY \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=128Mi
kn service apply appsupport -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/appsupport/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=appsupport \
  --scale-min 0 \
  --scale-max 3 \
  --concurrency-target 100 \
  --concurrency-limit 0 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=128Mi
kn service apply lcm -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/lcm/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=lcm \
  --scale-min 0 \
  --scale-max 2 \
  --concurrency-limit 10 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=128Mi
kn service apply packages -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/packages/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=packages \
  --scale-min 0 \
  --scale-max 3 \
  --concurrency-limit 4 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env-value-from KMEP_ENCRYPTION_KEY=secret:kmep-secrets:KMEP_ENCRYPTION_KEY \
  --env-value-from S3_ENDPOINT=cm:kmep-config:S3_ENDPOINT \
  --env-value-from S3_BUCKET=cm:kmep-config:S3_BUCKET \
  --env-value-from S3_REGION=cm:kmep-config:S3_REGION \
  --env-value-from S3_ACCESS_KEY=secret:kmep-s3:S3_ACCESS_KEY \
  --env-value-from S3_SECRET_KEY=secret:kmep-s3:S3_SECRET_KEY \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=256Mi
kn service apply instantiate -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/instantiate/cmd)" \
  --service-account instantiate \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=instantiate \
  --scale-min 0 \
  --scale-max 3 \
  --concurrency-limit 10 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env-value-from KMEP_ENCRYPTION_KEY=secret:kmep-secrets:KMEP_ENCRYPTION_KEY \
  --env-value-from S3_ENDPOINT=cm:kmep-config:S3_ENDPOINT \
  --env-value-from S3_BUCKET=cm:kmep-config:S3_BUCKET \
  --env-value-from S3_REGION=cm:kmep-config:S3_REGION \
  --env-value-from S3_ACCESS_KEY=secret:kmep-s3:S3_ACCESS_KEY \
  --env-value-from S3_SECRET_KEY=secret:kmep-s3:S3_SECRET_KEY \
  --env-value-from KMEP_APP_NAMESPACE=cm:kmep-config:KMEP_APP_NAMESPACE \
  --env-value-from KMEP_MEP_URL=cm:kmep-config:KMEP_MEP_URL \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=512Mi
kn service apply notify -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/triggers/notify/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --cluster-local \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=notify \
  --scale-min 1 \
  --scale-max 5 \
  --concurrency-target 50 \
  --concurrency-limit 100 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_CALLBACK_ALLOW=cm:kmep-config:KMEP_CALLBACK_ALLOW \
  --env-value-from KMEP_CALLBACK_DENY=cm:kmep-config:KMEP_CALLBACK_DENY \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=256Mi
kn service apply installer -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/triggers/installer/cmd)" \
  --service-account installer \
  --label-service app.kubernetes.io/part-of=kmep \
  --cluster-local \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=installer \
  --scale-min 0 \
  --scale-max 3 \
  --concurrency-limit 10 \
  --timeout 600 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ENCRYPTION_KEY=secret:kmep-secrets:KMEP_ENCRYPTION_KEY \
  --env-value-from S3_ENDPOINT=cm:kmep-config:S3_ENDPOINT \
  --env-value-from S3_BUCKET=cm:kmep-config:S3_BUCKET \
  --env-value-from S3_REGION=cm:kmep-config:S3_REGION \
  --env-value-from S3_ACCESS_KEY=secret:kmep-s3:S3_ACCESS_KEY \
  --env-value-from S3_SECRET_KEY=secret:kmep-s3:S3_SECRET_KEY \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=512Mi
kn service apply deadletter -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/triggers/deadletter/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --cluster-local \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=deadletter \
  --scale-min 0 \
  --scale-max 1 \
  --concurrency-limit 0 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=64Mi
kn service apply dashboard -n kmep \
  --image "$(ko build github.com/kmep-io/kmep/functions/dashboard/cmd)" \
  --service-account kmep-function \
  --label-service app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/part-of=kmep \
  --label-revision app.kubernetes.io/name=dashboard \
  --scale-min 0 \
  --scale-max 2 \
  --concurrency-limit 50 \
  --annotation-revision prometheus.io/scrape=true \
  --annotation-revision prometheus.io/port=8080 \
  --annotation-revision prometheus.io/path=/metrics \
  --probe-readiness http:::/healthz --probe-readiness-opts InitialDelaySeconds=0 \
  --env-value-from REDIS_URL=cm:kmep-config:REDIS_URL \
  --env-value-from KMEP_ADMIN_TOKEN=secret:kmep-secrets:KMEP_ADMIN_TOKEN \
  --env K_SINK=http://broker-ingress.knative-eventing.svc.cluster.local/kmep/kmep \
  --env-value-from KMEP_LOG_LEVEL=cm:kmep-config:KMEP_LOG_LEVEL \
  --request cpu=50m,memory=32Mi \
  --limit memory=128Mi

# Eventing (manifests/eventing.yaml).
kn broker describe kmep -n kmep >/dev/null 2>&1 || kn broker create kmep -n kmep \
  --class MTChannelBasedBroker \
  --retry 10 --backoff-policy exponential --backoff-delay PT0.5S \
  --dl-sink ksvc:deadletter
kn trigger describe notify-service-changed -n kmep >/dev/null 2>&1 || kn trigger create notify-service-changed -n kmep \
  --broker kmep --filter type=dev.kmep.service.changed.v1 --sink ksvc:notify
kn trigger describe notify-app-terminating -n kmep >/dev/null 2>&1 || kn trigger create notify-app-terminating -n kmep \
  --broker kmep --filter type=dev.kmep.app.terminating.v1 --sink ksvc:notify
kn trigger describe installer-instance-changed -n kmep >/dev/null 2>&1 || kn trigger create installer-instance-changed -n kmep \
  --broker kmep --filter type=dev.kmep.instance.changed.v1 --sink ksvc:installer

# The agents (manifests/longrunning.yaml) and the relay's K_SINK.
ko apply -f manifests/longrunning.yaml
kn source binding describe kmep-relay -n kmep >/dev/null 2>&1 || kn source binding create kmep-relay -n kmep \
  --subject Deployment:apps/v1:relay --sink broker:kmep
