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
	"log/slog"
	"os"
	"time"

	"github.com/kmep-io/kmep/longrunning/reaper"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("reaper", run) }

func run(ctx context.Context, log *slog.Logger) error {
	poll, err := server.EnvDuration("KMEP_REAPER_INTERVAL", 200*time.Millisecond)
	if err != nil {
		return err
	}
	healthAddr := server.HealthAddr(os.Getenv("KMEP_HEALTH_ADDR"), os.Getenv("PORT"))
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	reg := metrics.NewRegistry()
	a, err := reaper.New(reaper.Config{MaxPoll: poll}, reaper.Deps{Store: st, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	// Run logs the counters.
	return server.RunAgent(ctx, server.AgentOptions{HealthAddr: healthAddr, Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
}
