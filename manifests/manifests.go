// Package manifests embeds what a cluster applies (`ko apply -f
// manifests/`: namespaces, configuration, the functions as Knative
// Services, the Broker, Triggers and SinkBinding, the agents' Deployments
// and DaemonSet, Redis, MinIO and RBAC), so that the all-in-one and the
// tests read the very same objects. secrets/ holds the shape of the
// Secrets (local/kind/secrets.sh makes real ones) and examples/ what an
// operator adapts before applying (DomainMapping for HTTPS, an app with
// the mep-agent sidecar); neither is applied by ko.
package manifests

import "embed"

// FS holds every manifest (*.yaml).
//
//go:embed *.yaml
var FS embed.FS

// Eventing is eventing.yaml: the Broker "kmep", its Triggers and the
// relay's SinkBinding.
//
//go:embed eventing.yaml
var Eventing []byte
