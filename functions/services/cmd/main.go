// Command services is the MEC 011 service management function's binary,
// served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_MIN_LIVENESS_INTERVAL (1s), KMEP_CACHE_MAX_STALENESS (1s),
// KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kmep-io/kmep/functions/auth"
	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/store"
)

func main() {
	log := server.NewLogger(os.Stderr, "services", os.Getenv("KMEP_LOG_LEVEL"))
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

func duration(k string, def time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(env(k, def.String()))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: want a positive duration like 1s", k)
	}
	return d, nil
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	minLive, err := duration("KMEP_MIN_LIVENESS_INTERVAL", time.Second)
	if err != nil {
		return err
	}
	stale, err := duration("KMEP_CACHE_MAX_STALENESS", time.Second)
	if err != nil {
		return err
	}
	rdb, err := store.Dial(env("REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := store.New(store.Options{Client: rdb})
	if err != nil {
		return err
	}
	cache := services.NewCache(st, store.CacheOptions{MaxStaleness: stale,
		OnError: func(err error) { log.Warn("discovery cache resync", "err", err) }})
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cache.Run(cctx)
	verifier := auth.NewVerifier(st, auth.VerifierOptions{})
	h := services.New(services.Deps{Store: st, Cache: cache, Authenticate: verifier.AppInstance,
		Log: log, MinLivenessInterval: minLive})
	return server.Run(ctx, server.Options{Addr: ":" + env("PORT", "8080"), Handler: h, Log: log})
}
