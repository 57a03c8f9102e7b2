// Command deadletter is the Triggers' dead-letter sink (package
// deadletter), served on $PORT as a Knative Service.
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
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
	p, err := cloudevents.NewHTTP()
	if err != nil {
		return fmt.Errorf("cloudevents protocol: %w", err)
	}
	receiver, err := cloudevents.NewHTTPReceiveHandler(ctx, p, h.Handle)
	if err != nil {
		return fmt.Errorf("cloudevents receiver: %w", err)
	}
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(reg, receiver), Log: log})
}
