// Command notify is the notification trigger's binary: the CloudEvents
// receiver a Knative Eventing Trigger delivers kmep's service-changed and
// app-terminating events to, served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_CALLBACK_ALLOW (empty: only the default callback rules),
// KMEP_CALLBACK_DENY (empty: private ranges are allowed; CIDRs refused on
// top of the default rules),
// KMEP_NOTIFY_CONCURRENCY (64), KMEP_NOTIFY_TIMEOUT (5s), KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
	"github.com/kmep-io/kmep/triggers/notify"
)

func main() { server.Main("notify", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	callback.Lists
	// The defaults are notify.DefaultConcurrency and notify.DefaultTimeout
	// (main_test.go checks they agree).
	Concurrency server.PositiveInt      `envconfig:"KMEP_NOTIFY_CONCURRENCY" default:"64" desc:"deliveries in flight at most"`
	Timeout     server.PositiveDuration `envconfig:"KMEP_NOTIFY_TIMEOUT" default:"5s" desc:"bound of one callback POST"`
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
	timeout := time.Duration(cfg.Timeout)
	st, closeStore, err := cfg.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	policy, err := callback.New(callback.Options{Allow: allow, Deny: deny, IncludeInterfaceAddrs: true, Timeout: timeout})
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	n, err := notify.New(notify.Deps{Store: st, Client: policy.Client(), Log: log, Metrics: reg,
		Concurrency: int(cfg.Concurrency), Timeout: timeout})
	if err != nil {
		return err
	}
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(reg, notify.HTTPHandler(n)), Log: log})
}
