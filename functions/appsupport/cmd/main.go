// Command appsupport is the MEC 011 application support function's binary,
// served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_TIME_TRACEABLE (false: set it to true only when the node's clock is
// locked to a UTC source, e.g. by PTP; current_time then reports
// TRACEABLE), KMEP_LOG_LEVEL (info). timing_caps lists no NTP servers or
// PTP masters from this binary.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/functions/auth"
	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/store"
)

func main() {
	log := server.NewLogger(os.Stderr, "appsupport", os.Getenv("KMEP_LOG_LEVEL"))
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
	traceable, err := strconv.ParseBool(env("KMEP_TIME_TRACEABLE", "false"))
	if err != nil {
		return fmt.Errorf("KMEP_TIME_TRACEABLE: want true or false")
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
	h := appsupport.New(appsupport.Deps{Store: st, Authenticate: verifier.AppInstance, Log: log, TimeTraceable: traceable})
	return server.Run(ctx, server.Options{Addr: ":" + env("PORT", "8080"), Handler: h, Log: log})
}
