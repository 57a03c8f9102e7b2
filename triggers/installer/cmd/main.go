// Command installer is the installer trigger's binary: the CloudEvents
// receiver a Knative Eventing Trigger delivers kmep's instance-changed
// events to (package installer), served on $PORT (the Knative runtime
// contract). It links Helm and client-go. Its settings: installer -h.
package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/receiver"
	"github.com/kmep-io/kmep/store/kit/server"
	"github.com/kmep-io/kmep/triggers/installer"
)

func main() { server.Main("installer", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	blob.S3
	EncryptionKey store.EncryptionKey     `envconfig:"KMEP_ENCRYPTION_KEY" required:"true" desc:"32 bytes, base64 or hex: opens the install specs and kubeconfigs, seals the credentials"`
	Timeout       server.PositiveDuration `envconfig:"KMEP_INSTALL_TIMEOUT" default:"5m" desc:"bound of one install or removal"`
	LeaseTTL      server.PositiveDuration `envconfig:"KMEP_INSTALL_LEASE_TTL" default:"30s" desc:"how long a stopped installer's hold on an instance lasts"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	objects, err := blob.New(cfg.Blob())
	if err != nil {
		return err
	}
	st, closeStore, err := cfg.OpenStore(store.Options{EncryptionKey: cfg.EncryptionKey})
	if err != nil {
		return err
	}
	defer closeStore()
	in, err := installer.New(installer.Deps{Store: st, Objects: objects, Cluster: kube.New(kube.Options{Log: log}), Log: log,
		Timeout: time.Duration(cfg.Timeout), LeaseTTL: time.Duration(cfg.LeaseTTL)})
	if err != nil {
		return err
	}
	receiver := receiver.New(in.Handle, receiver.Options{Log: log})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(metrics.NewRegistry(), receiver), Log: log})
}
