// Command deadletter is the Triggers' dead-letter sink (package
// deadletter), served on $PORT as a Knative Service.
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"log/slog"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/receiver"
	"github.com/kmep-io/kmep/store/kit/server"
	"github.com/kmep-io/kmep/triggers/deadletter"
)

func main() { server.Main("deadletter", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	st, closeStore, err := cfg.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	reg := metrics.NewRegistry()
	h := deadletter.New(deadletter.Deps{Recorder: st, Settler: st, Log: log, Metrics: reg})
	receiver := receiver.New(h.Handle, receiver.Options{Log: log})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(reg, receiver), Log: log})
}
