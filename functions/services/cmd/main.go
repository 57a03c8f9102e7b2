// Command services is the MEC 011 service management function's binary,
// served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_MIN_LIVENESS_INTERVAL (1s), KMEP_CACHE_MAX_STALENESS (1s),
// KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("services", run) }

func run(ctx context.Context, log *slog.Logger) error {
	minLive, err := server.EnvDuration("KMEP_MIN_LIVENESS_INTERVAL", time.Second)
	if err != nil {
		return err
	}
	stale, err := server.EnvDuration("KMEP_CACHE_MAX_STALENESS", time.Second)
	if err != nil {
		return err
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	cache := services.NewCache(st, store.CacheOptions{MaxStaleness: stale,
		OnError: func(err error) { log.Warn("discovery cache resync", "err", err) }})
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cache.Run(cctx)
	verifier := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st, Log: log})
	go verifier.Run(cctx)
	reg := metrics.NewRegistry()
	h := services.New(services.Deps{Store: st, Cache: cache, Authenticate: verifier.AppInstance,
		Log: log, MinLivenessInterval: minLive, Metrics: reg})
	return server.Run(ctx, server.Options{Addr: ":" + server.Env("PORT", "8080"), Handler: metrics.Mount(reg, h), Log: log})
}
