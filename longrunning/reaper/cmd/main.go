// Command reaper suspends MEC services that missed their heartbeat (package
// reaper). Replicas need no lease: run one or several.
//
// Environment: REDIS_URL (redis://127.0.0.1:6379/0), KMEP_REAPER_INTERVAL
// (200ms: the longest sleep between two peeks at the earliest deadline),
// KMEP_LOG_LEVEL (info). GET /healthz answers "ok" on KMEP_HEALTH_ADDR, or on
// ":$PORT" when only PORT is set; with neither, no HTTP port is opened.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/longrunning/reaper"
	"github.com/kmep-io/kmep/store"
)

func main() { server.Main("reaper", run) }

func run(ctx context.Context, log *slog.Logger) error {
	poll, err := server.EnvDuration("KMEP_REAPER_INTERVAL", 200*time.Millisecond)
	if err != nil {
		return err
	}
	healthAddr := os.Getenv("KMEP_HEALTH_ADDR")
	if healthAddr == "" && os.Getenv("PORT") != "" {
		healthAddr = ":" + os.Getenv("PORT")
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	a, err := reaper.New(reaper.Config{MaxPoll: poll}, reaper.Deps{Store: st, Log: log})
	if err != nil {
		return err
	}

	health := make(chan error, 1)
	if healthAddr != "" {
		hctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			health <- server.Run(hctx, server.Options{Addr: healthAddr, Handler: http.NotFoundHandler(),
				Log: log, DrainTimeout: time.Second})
		}()
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	select {
	case err = <-done:
	case herr := <-health: // before ctx ends, only when it could not listen
		cancel()
		err = <-done
		if herr != nil {
			err = fmt.Errorf("health server: %w", herr)
		}
	}
	return err // Run logged the counters
}
