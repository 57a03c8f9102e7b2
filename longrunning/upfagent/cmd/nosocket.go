//go:build !vppsocket

package main

import (
	"errors"

	"go.fd.io/govpp/adapter"
)

// socketAdapter would be govpp's socket client, but go.sum lacks the hash
// of github.com/fsnotify/fsnotify v1.9.0, which it imports; until the
// module files gain it (go get go.fd.io/govpp/adapter/socketclient@v0.13.0),
// the socket client is built only with -tags vppsocket.
func socketAdapter(string) (adapter.VppAPI, error) {
	return nil, errors.New("KMEP_UPF_DRIVER=mp2upf: this binary was built without govpp's socket client (build with -tags vppsocket once go.sum has github.com/fsnotify/fsnotify v1.9.0)")
}
