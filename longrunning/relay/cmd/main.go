// Command relay publishes kmep's change stream to the Knative Broker: the
// outbox relay (package relay). A SinkBinding injects the Broker's address
// as K_SINK. Run two replicas: one relays, the other waits for the lease.
//
// Environment: K_SINK (required), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_RELAY_WORKERS (8), KMEP_RELAY_LEASE_TTL (5s), KMEP_RELAY_REDELIVERY
// (5m: an event notify has not settled this long after its last activity
// is published again), KMEP_RELAY_QUEUE_SIZE (128) and
// KMEP_RELAY_BULK_QUEUE_SIZE (4096: each partition's backlog of live and of
// bulk entries read but not yet published), KMEP_RELAY_FIFO (false; true:
// one lane, bulk changes no longer yield to live ones), KMEP_LOG_LEVEL
// (info). GET /healthz and GET /metrics
// answer on KMEP_HEALTH_ADDR, or on ":$PORT" when only PORT is set; with
// neither, no HTTP port is opened.
package main

import (
	"context"
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

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Agent
	store.Redis
	Sink     string                  `envconfig:"K_SINK" required:"true" desc:"the Broker's URL (bind the Deployment to the Broker with a SinkBinding)"`
	Workers  server.PositiveInt      `envconfig:"KMEP_RELAY_WORKERS" default:"8" desc:"publishes in flight at most"`
	LeaseTTL server.PositiveDuration `envconfig:"KMEP_RELAY_LEASE_TTL" default:"5s" desc:"the relay lease's time to live"`
	// The defaults are relay's (main_test.go checks they agree).
	Redelivery    server.PositiveDuration `envconfig:"KMEP_RELAY_REDELIVERY" default:"5m" desc:"an event notify has not settled this long after its last activity is published again"`
	QueueSize     server.PositiveInt      `envconfig:"KMEP_RELAY_QUEUE_SIZE" default:"128" desc:"each partition's backlog of live entries read but not yet published"`
	BulkQueueSize server.PositiveInt      `envconfig:"KMEP_RELAY_BULK_QUEUE_SIZE" default:"4096" desc:"each partition's backlog of bulk entries read but not yet published (about 1 KiB each)"`
	FIFO          bool                    `envconfig:"KMEP_RELAY_FIFO" default:"false" desc:"true: one lane per partition, bulk changes no longer yield to live ones"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	st, closeStore, err := cfg.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	holder, _ := os.Hostname() // the pod name: readable in the lease
	if holder != "" {
		holder += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	reg := metrics.NewRegistry()
	a, err := relay.New(relay.Config{Sink: cfg.Sink, Workers: int(cfg.Workers), LeaseTTL: time.Duration(cfg.LeaseTTL), Holder: holder,
		Redelivery: time.Duration(cfg.Redelivery), QueueSize: int(cfg.QueueSize), BulkQueueSize: int(cfg.BulkQueueSize), FIFO: cfg.FIFO},
		relay.Deps{Store: st, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	err = server.RunAgent(ctx, server.AgentOptions{HealthAddr: cfg.HealthAddr(), Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
	s := a.Stats()
	log.Info("stopped", "published", s.Published, "unpublished", s.Unpublished, "malformed", s.Malformed,
		"send_failures", s.SendFailures, "orphans", s.Orphans, "redelivered", s.Redelivered, "gone", s.Gone)
	return err
}
