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
	"os"
	"os/signal"
	"syscall"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/triggers/deadletter"
)

func main() {
	log := server.NewLogger(os.Stderr, "deadletter", os.Getenv("KMEP_LOG_LEVEL"))
	if err := run(log); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rdb, err := store.Dial(env("REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := store.New(store.Options{Client: rdb})
	if err != nil {
		return err
	}
	h := deadletter.New(deadletter.Deps{Recorder: st, Log: log})
	p, err := cloudevents.NewHTTP()
	if err != nil {
		return fmt.Errorf("cloudevents protocol: %w", err)
	}
	receiver, err := cloudevents.NewHTTPReceiveHandler(ctx, p, h.Handle)
	if err != nil {
		return fmt.Errorf("cloudevents receiver: %w", err)
	}
	return server.Run(ctx, server.Options{Addr: ":" + env("PORT", "8080"), Handler: receiver, Log: log})
}
