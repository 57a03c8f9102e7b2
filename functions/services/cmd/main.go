// Command services is the MEC 011 service management function's binary,
// served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_MIN_LIVENESS_INTERVAL (1s), KMEP_CACHE_MAX_STALENESS (1s),
// KMEP_ADMIN_TOKEN (unset: no admin reads; set: the platform admin reads
// discovery and every app instance's services, and writes none),
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

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	auth.AdminReads
	MinLivenessInterval server.PositiveDuration `envconfig:"KMEP_MIN_LIVENESS_INTERVAL" default:"1s" desc:"the shortest heartbeat interval a service may ask for"`
	CacheMaxStaleness   server.PositiveDuration `envconfig:"KMEP_CACHE_MAX_STALENESS" default:"1s" desc:"how stale the discovery cache may get before a read resyncs it"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	minLive, stale := time.Duration(cfg.MinLivenessInterval), time.Duration(cfg.CacheMaxStaleness)
	adminRead, err := cfg.AdminRead()
	if err != nil {
		return err
	}
	st, closeStore, err := cfg.OpenStore(store.Options{})
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
		AdminRead: adminRead, Log: log, MinLivenessInterval: minLive, Metrics: reg})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(reg, h), Log: log, Ready: verifier.Ready})
}
