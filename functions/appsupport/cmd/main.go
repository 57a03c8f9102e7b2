// Command appsupport is the MEC 011 application support function's binary,
// served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_TIME_TRACEABLE (false: set it to true only when the node's clock is
// locked to a UTC source, e.g. by PTP; current_time then reports
// TRACEABLE), KMEP_ADMIN_TOKEN (unset: no admin reads; set: the platform
// admin reads every app instance's traffic and DNS rules and registration,
// and changes none), KMEP_LOG_LEVEL (info). timing_caps lists no NTP
// servers or PTP masters from this binary.
package main

import (
	"context"
	"log/slog"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("appsupport", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	auth.AdminReads
	TimeTraceable bool `envconfig:"KMEP_TIME_TRACEABLE" default:"false" desc:"true only when the node's clock is locked to a UTC source (PTP): current_time reports TRACEABLE"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	adminRead, err := cfg.AdminRead()
	if err != nil {
		return err
	}
	st, closeStore, err := cfg.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	// The verifier follows token revocations until run returns (past the drain).
	verifier := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st, Log: log})
	vctx, stopVerifier := context.WithCancel(context.Background())
	defer stopVerifier()
	go verifier.Run(vctx)
	h := appsupport.New(appsupport.Deps{Store: st, Authenticate: verifier.AppInstance, AdminRead: adminRead,
		Log: log, TimeTraceable: cfg.TimeTraceable})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log, Ready: verifier.Ready})
}
