// Package manifests embeds what a cluster applies, so that the all-in-one
// and the tests read the very same objects: Eventing holds the Broker, the
// Triggers and the relay's SinkBinding.
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
