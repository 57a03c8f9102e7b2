// Command subscriptions is the MEC 011 subscription function's binary
// (service availability and app termination subscriptions), served on $PORT
// (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_CALLBACK_ALLOW (none: callback URLs to loopback, link-local, metadata
// and this host's own addresses are refused; see callback.ParseAllowList),
// KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kmep-io/kmep/functions/auth"
	"github.com/kmep-io/kmep/functions/callback"
	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/functions/subscriptions"
	"github.com/kmep-io/kmep/store"
)

func main() {
	log := server.NewLogger(os.Stderr, "subscriptions", os.Getenv("KMEP_LOG_LEVEL"))
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
	allow, err := callback.ParseAllowList(os.Getenv("KMEP_CALLBACK_ALLOW"))
	if err != nil {
		return fmt.Errorf("KMEP_CALLBACK_ALLOW: %w", err)
	}
	policy, err := callback.New(callback.Options{Allow: allow, IncludeInterfaceAddrs: true})
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
	verifier := auth.NewVerifier(st, auth.VerifierOptions{})
	h := subscriptions.New(subscriptions.Deps{Store: st, Callbacks: policy, Authenticate: verifier.AppInstance, Log: log})
	return server.Run(ctx, server.Options{Addr: ":" + env("PORT", "8080"), Handler: h, Log: log})
}
