// Command relay publishes kmep's change stream to the Knative Broker: the
// outbox relay (package relay). A SinkBinding injects the Broker's address
// as K_SINK. Run two replicas: one relays, the other waits for the lease.
//
// Environment: K_SINK (required), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_RELAY_WORKERS (8), KMEP_RELAY_LEASE_TTL (5s), KMEP_RELAY_REDELIVERY
// (5m: an event notify has not settled this long after its last activity
// is published again), KMEP_LOG_LEVEL (info). GET /healthz and GET /metrics
// answer on KMEP_HEALTH_ADDR, or on ":$PORT" when only PORT is set; with
// neither, no HTTP port is opened.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("relay", run) }

func run(ctx context.Context, log *slog.Logger) error {
	sink := os.Getenv("K_SINK")
	if sink == "" {
		return errors.New("K_SINK is not set (bind the Deployment to the Broker with a SinkBinding)")
	}
	workers, err := server.EnvInt("KMEP_RELAY_WORKERS", 8)
	if err != nil {
		return err
	}
	ttl, err := server.EnvDuration("KMEP_RELAY_LEASE_TTL", 5*time.Second)
	if err != nil {
		return err
	}
	redelivery, err := server.EnvDuration("KMEP_RELAY_REDELIVERY", relay.DefaultRedelivery)
	if err != nil {
		return err
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	holder, _ := os.Hostname() // the pod name: readable in the lease
	if holder != "" {
		holder += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	reg := metrics.NewRegistry()
	a, err := relay.New(relay.Config{Sink: sink, Workers: workers, LeaseTTL: ttl, Holder: holder, Redelivery: redelivery},
		relay.Deps{Store: st, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	healthAddr := server.HealthAddr(os.Getenv("KMEP_HEALTH_ADDR"), os.Getenv("PORT"))
	err = server.RunAgent(ctx, server.AgentOptions{HealthAddr: healthAddr, Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
	s := a.Stats()
	log.Info("stopped", "published", s.Published, "unpublished", s.Unpublished, "malformed", s.Malformed,
		"send_failures", s.SendFailures, "orphans", s.Orphans, "redelivered", s.Redelivered, "gone", s.Gone)
	return err
}
