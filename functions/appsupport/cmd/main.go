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
	"errors"
	"log/slog"
	"strconv"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("appsupport", run) }

func run(ctx context.Context, log *slog.Logger) error {
	traceable, err := strconv.ParseBool(server.Env("KMEP_TIME_TRACEABLE", "false"))
	if err != nil {
		return errors.New("KMEP_TIME_TRACEABLE: want true or false")
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	// The verifier follows token revocations until run returns (past the drain).
	verifier := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st, Log: log})
	vctx, stopVerifier := context.WithCancel(context.Background())
	defer stopVerifier()
	go verifier.Run(vctx)
	h := appsupport.New(appsupport.Deps{Store: st, Authenticate: verifier.AppInstance, Log: log, TimeTraceable: traceable})
	return server.Run(ctx, server.Options{Addr: ":" + server.Env("PORT", "8080"), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log})
}
