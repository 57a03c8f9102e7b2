package main

import (
	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/socketclient"
)

// socketAdapter is govpp's socket client on VPP's API socket. It does not
// connect yet: vppconn.Dial connects it in the background and reconnects
// it whenever VPP goes away, so a missing socket is retried, not fatal.
func socketAdapter(path string) adapter.VppAPI { return socketclient.NewVppClient(path) }
