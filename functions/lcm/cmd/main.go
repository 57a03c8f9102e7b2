// Command lcm is the Mm5 lifecycle function's binary (appd configuration and
// app termination), served on $PORT.
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_ADMIN_TOKEN (required), KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/kmep-io/kmep/functions/lcm"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("lcm", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	AdminToken string `envconfig:"KMEP_ADMIN_TOKEN" required:"true" desc:"the platform admin's bearer token"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	admin, err := auth.NewAdmin(cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	st, closeStore, err := cfg.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	h := lcm.New(lcm.Deps{Store: st, Admin: admin, Log: log})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log})
}
