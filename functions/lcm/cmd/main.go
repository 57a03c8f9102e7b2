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
	"os/signal"
	"syscall"

	"github.com/kmep-io/kmep/functions/auth"
	"github.com/kmep-io/kmep/functions/lcm"
	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/store"
)

func main() {
	log := server.NewLogger(os.Stderr, "lcm", os.Getenv("KMEP_LOG_LEVEL"))
	if err := run(log); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	admin, err := auth.NewAdmin(os.Getenv("KMEP_ADMIN_TOKEN"))
	if err != nil {
		return fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	rdb, err := store.Dial(url)
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := store.New(store.Options{Client: rdb})
	if err != nil {
		return err
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return server.Run(ctx, server.Options{Addr: ":" + port, Handler: lcm.New(lcm.Deps{Store: st, Admin: admin, Log: log}), Log: log})
}
