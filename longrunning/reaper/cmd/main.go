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
	"time"

	"github.com/kmep-io/kmep/longrunning/reaper"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("reaper", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Agent
	store.Redis
	Interval server.PositiveDuration `envconfig:"KMEP_REAPER_INTERVAL" default:"200ms" desc:"the longest sleep between two peeks at the earliest deadline"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	st, closeStore, err := cfg.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	reg := metrics.NewRegistry()
	a, err := reaper.New(reaper.Config{MaxPoll: time.Duration(cfg.Interval)}, reaper.Deps{Store: st, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	// Run logs the counters.
	return server.RunAgent(ctx, server.AgentOptions{HealthAddr: cfg.HealthAddr(), Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
}
