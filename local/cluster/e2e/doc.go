// Package e2e holds the end-to-end test of the local cluster path (make
// e2e, build tag e2e): it brings the cluster up (local/cluster/up.sh),
// deploys manifests/, runs the smoke walkthrough through the base URL,
// measures a scaled-to-zero function's cold start through the activator
// against a warm pod, kills a function pod under discovery load; it
// queries the mesh agent's DNS from a pod, runs the sample app with the
// mep-agent sidecar, instantiates a package into the same cluster (and
// one whose image cannot be pulled), checks that make deploy names a
// Trigger that is not Ready, and sends 100 changes per fault through
// relay → Broker → Trigger → notify to a receiver pod (broker ingress,
// filter, in-memory channel dispatcher, notify and Redis pods deleted; the
// subscriber down 30 s), counting lost and duplicate notifications. Then
// it tears the cluster down, checking that nothing of it is left. It
// prints what it measured. It needs root and is not part of make test.
package e2e
