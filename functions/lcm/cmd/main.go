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
	"os"

	"github.com/kmep-io/kmep/functions/lcm"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("lcm", run) }

func run(ctx context.Context, log *slog.Logger) error {
	admin, err := auth.NewAdmin(os.Getenv("KMEP_ADMIN_TOKEN"))
	if err != nil {
		return fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	h := lcm.New(lcm.Deps{Store: st, Admin: admin, Log: log})
	return server.Run(ctx, server.Options{Addr: ":" + server.Env("PORT", "8080"), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log})
}
