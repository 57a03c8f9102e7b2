// Package e2e holds the end-to-end test of the local cluster path (make
// e2e, build tag e2e): it brings the cluster up (local/cluster/up.sh),
// deploys manifests/, runs the smoke walkthrough through the base URL,
// measures a scaled-to-zero function's cold start through the activator
// against a warm pod, kills a function pod under discovery load, and
// tears the cluster down, checking that nothing of it is left. It prints
// what it measured. It needs root and is not part of make test.
package e2e
