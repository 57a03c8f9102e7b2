#!/bin/sh
# secrets.sh prints kmep's Secrets (the shape of manifests/secrets/secrets.yaml)
# with fresh random values, for `kubectl apply -f -`. Needs openssl.
#
#   sh local/kind/secrets.sh | kubectl apply -f -
#
# KMEP_NAMESPACE (kmep) is the namespace they go to. Run it once per
# cluster and keep the Secrets: see manifests/secrets/secrets.yaml.
set -eu
ns=${KMEP_NAMESPACE:-kmep}
signing_key=$(openssl genpkey -algorithm ed25519)
encryption_key=$(openssl rand -base64 32)
admin_token=$(openssl rand -hex 24)
s3_access_key=kmep$(openssl rand -hex 8)
s3_secret_key=$(openssl rand -hex 24)
mesh_psk=$(openssl rand -hex 32)
indented_key=$(printf '%s\n' "$signing_key" | sed 's/^/    /')
cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: kmep-secrets
  namespace: $ns
  labels:
    app.kubernetes.io/part-of: kmep
type: Opaque
stringData:
  KMEP_TOKEN_SIGNING_KEY: |
$indented_key
  KMEP_ENCRYPTION_KEY: "$encryption_key"
  KMEP_ADMIN_TOKEN: "$admin_token"
---
apiVersion: v1
kind: Secret
metadata:
  name: kmep-s3
  namespace: $ns
  labels:
    app.kubernetes.io/part-of: kmep
type: Opaque
stringData:
  S3_ACCESS_KEY: "$s3_access_key"
  S3_SECRET_KEY: "$s3_secret_key"
---
apiVersion: v1
kind: Secret
metadata:
  name: kmep-mesh
  namespace: $ns
  labels:
    app.kubernetes.io/part-of: kmep
type: Opaque
stringData:
  KMEP_MESH_PSK: "$mesh_psk"
YAML
