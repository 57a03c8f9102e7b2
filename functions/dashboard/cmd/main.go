// Command dashboard is the operator's web UI and the platform admin's read
// API (functions/dashboard), served on $PORT.
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_ADMIN_TOKEN (required), K_SINK (the broker's URL, where redelivered
// dead letters go; unset: redelivery answers 501), KMEP_UPF (upf: the data
// plane whose rule statuses are shown), KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kmep-io/kmep/functions/dashboard"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("dashboard", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	AdminToken string `envconfig:"KMEP_ADMIN_TOKEN" required:"true" desc:"the platform admin's bearer token"`
	Sink       string `envconfig:"K_SINK" desc:"the broker's URL, where redelivered dead letters go (unset: redelivery answers 501)"`
	UPF        string `envconfig:"KMEP_UPF" default:"upf" desc:"the data plane whose rule statuses are shown"`
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
	d := dashboard.Deps{Store: st, Admin: admin, UPF: cfg.UPF, Stop: ctx.Done(), Log: log}
	if sink := cfg.Sink; sink != "" {
		c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(sink))
		if err != nil {
			return fmt.Errorf("K_SINK: %w", err)
		}
		d.Sender = c
	}
	// App tokens are told from garbage (a 403, not a 401).
	vctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	verifier := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st, Log: log})
	go verifier.Run(vctx)
	d.App = verifier.AppInstance
	h := dashboard.New(d)
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log, Ready: verifier.Ready})
}
