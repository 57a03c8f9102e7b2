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
	"net/netip"
	"os"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
	"github.com/kmep-io/kmep/triggers/notify"
)

func main() { server.Main("notify", run) }

// config is the environment, read once.
type config struct {
	addr        string
	redisURL    string
	allow       callback.AllowList
	deny        []netip.Prefix
	concurrency int
	timeout     time.Duration
}

func readConfig() (config, error) {
	c := config{addr: ":" + server.Env("PORT", "8080"), redisURL: server.Env("REDIS_URL", "redis://127.0.0.1:6379/0")}
	var err error
	if c.allow, err = callback.ParseAllowList(os.Getenv("KMEP_CALLBACK_ALLOW")); err != nil {
		return c, fmt.Errorf("KMEP_CALLBACK_ALLOW: %w", err)
	}
	if c.deny, err = callback.ParseDenyList(os.Getenv("KMEP_CALLBACK_DENY")); err != nil {
		return c, fmt.Errorf("KMEP_CALLBACK_DENY: %w", err)
	}
	if c.concurrency, err = server.EnvInt("KMEP_NOTIFY_CONCURRENCY", notify.DefaultConcurrency); err != nil {
		return c, err
	}
	if c.timeout, err = server.EnvDuration("KMEP_NOTIFY_TIMEOUT", notify.DefaultTimeout); err != nil {
		return c, err
	}
	return c, nil
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := readConfig()
	if err != nil {
		return err
	}
	st, closeStore, err := store.Open(cfg.redisURL, store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	policy, err := callback.New(callback.Options{Allow: cfg.allow, Deny: cfg.deny, IncludeInterfaceAddrs: true, Timeout: cfg.timeout})
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	n, err := notify.New(notify.Deps{Store: st, Client: policy.Client(), Log: log, Metrics: reg,
		Concurrency: cfg.concurrency, Timeout: cfg.timeout})
	if err != nil {
		return err
	}
	h, err := notify.HTTPHandler(ctx, n)
	if err != nil {
		return err
	}
	return server.Run(ctx, server.Options{Addr: cfg.addr, Handler: metrics.Mount(reg, h), Log: log})
}
