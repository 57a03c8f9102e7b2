// Command notify is the notification trigger's binary: the CloudEvents
// receiver a Knative Eventing Trigger delivers kmep's service-changed and
// app-terminating events to, served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_CALLBACK_ALLOW (empty: only the default callback rules),
// KMEP_NOTIFY_CONCURRENCY (64), KMEP_NOTIFY_TIMEOUT (5s), KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/kmep-io/kmep/functions/callback"
	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/triggers/notify"
)

func main() {
	log := server.NewLogger(os.Stderr, "notify", os.Getenv("KMEP_LOG_LEVEL"))
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

// config is the environment, read once.
type config struct {
	addr        string
	redisURL    string
	allow       callback.AllowList
	concurrency int
	timeout     time.Duration
}

func readConfig() (config, error) {
	c := config{addr: ":" + env("PORT", "8080"), redisURL: env("REDIS_URL", "redis://127.0.0.1:6379/0")}
	var err error
	if c.allow, err = callback.ParseAllowList(os.Getenv("KMEP_CALLBACK_ALLOW")); err != nil {
		return c, fmt.Errorf("KMEP_CALLBACK_ALLOW: %w", err)
	}
	if c.concurrency, err = strconv.Atoi(env("KMEP_NOTIFY_CONCURRENCY", strconv.Itoa(notify.DefaultConcurrency))); err != nil || c.concurrency <= 0 {
		return c, fmt.Errorf("KMEP_NOTIFY_CONCURRENCY: want a positive integer")
	}
	if c.timeout, err = time.ParseDuration(env("KMEP_NOTIFY_TIMEOUT", notify.DefaultTimeout.String())); err != nil || c.timeout <= 0 {
		return c, fmt.Errorf("KMEP_NOTIFY_TIMEOUT: want a positive duration like 5s")
	}
	return c, nil
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := readConfig()
	if err != nil {
		return err
	}
	rdb, err := store.Dial(cfg.redisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := store.New(store.Options{Client: rdb})
	if err != nil {
		return err
	}
	policy, err := callback.New(callback.Options{Allow: cfg.allow, IncludeInterfaceAddrs: true, Timeout: cfg.timeout})
	if err != nil {
		return err
	}
	n, err := notify.New(notify.Deps{Store: st, Client: policy.Client(), Log: log,
		Concurrency: cfg.concurrency, Timeout: cfg.timeout})
	if err != nil {
		return err
	}
	h, err := notify.HTTPHandler(ctx, n)
	if err != nil {
		return err
	}
	return server.Run(ctx, server.Options{Addr: cfg.addr, Handler: h, Log: log})
}
