// Command subscriptions is the MEC 011 subscription function's binary
// (service availability and app termination subscriptions), served on $PORT
// (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_CALLBACK_ALLOW (none: callback URLs to loopback, link-local, metadata
// and this host's own addresses are refused; see callback.ParseAllowList),
// KMEP_CALLBACK_DENY (none: private ranges are allowed; CIDRs refused on
// top of the default rules, see callback.ParseDenyList), KMEP_ADMIN_TOKEN
// (unset: no admin reads; set: the platform admin reads every app
// instance's subscriptions, and creates and deletes none), KMEP_LOG_LEVEL
// (info).
package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/kmep-io/kmep/functions/subscriptions"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("subscriptions", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	callback.Lists
	auth.AdminReads
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	allow, err := callback.ParseAllowList(cfg.CallbackAllow)
	if err != nil {
		return fmt.Errorf("KMEP_CALLBACK_ALLOW: %w", err)
	}
	deny, err := callback.ParseDenyList(cfg.CallbackDeny)
	if err != nil {
		return fmt.Errorf("KMEP_CALLBACK_DENY: %w", err)
	}
	adminRead, err := cfg.AdminRead()
	if err != nil {
		return err
	}
	policy, err := callback.New(callback.Options{Allow: allow, Deny: deny, IncludeInterfaceAddrs: true})
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
	h := subscriptions.New(subscriptions.Deps{Store: st, Callbacks: policy, Authenticate: verifier.AppInstance,
		AdminRead: adminRead, Log: log})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log, Ready: verifier.Ready})
}
