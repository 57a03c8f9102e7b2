// Command relay publishes kmep's change stream to the Knative Broker: the
// outbox relay (package relay). A SinkBinding injects the Broker's address
// as K_SINK. Run two replicas: one relays, the other waits for the lease.
//
// Environment: K_SINK (required), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_RELAY_WORKERS (8), KMEP_RELAY_LEASE_TTL (5s), KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/kmep-io/kmep/functions/server"
	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/store"
)

func main() {
	log := server.NewLogger(os.Stderr, "relay", os.Getenv("KMEP_LOG_LEVEL"))
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
	sink := os.Getenv("K_SINK")
	if sink == "" {
		return errors.New("K_SINK is not set (bind the Deployment to the Broker with a SinkBinding)")
	}
	workers, err := strconv.Atoi(env("KMEP_RELAY_WORKERS", "8"))
	if err != nil || workers <= 0 {
		return fmt.Errorf("KMEP_RELAY_WORKERS: want a positive integer")
	}
	ttl, err := time.ParseDuration(env("KMEP_RELAY_LEASE_TTL", "5s"))
	if err != nil || ttl <= 0 {
		return fmt.Errorf("KMEP_RELAY_LEASE_TTL: want a positive duration like 5s")
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
	holder, _ := os.Hostname() // the pod name: readable in the lease
	if holder != "" {
		holder += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	a, err := relay.New(relay.Config{Sink: sink, Workers: workers, LeaseTTL: ttl, Holder: holder},
		relay.Deps{Store: st, Log: log})
	if err != nil {
		return err
	}
	err = a.Run(ctx)
	s := a.Stats()
	log.Info("stopped", "published", s.Published, "unpublished", s.Unpublished, "malformed", s.Malformed,
		"send_failures", s.SendFailures, "orphans", s.Orphans)
	return err
}
