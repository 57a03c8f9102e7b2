//go:build vppsocket

package main

import (
	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/socketclient"
)

// socketAdapter is govpp's socket client on VPP's API socket.
func socketAdapter(path string) (adapter.VppAPI, error) { return socketclient.NewVppClient(path), nil }
