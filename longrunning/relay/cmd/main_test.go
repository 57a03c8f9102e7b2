package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/store/kit/server"
)

// The binary's defaults are relay's zero values, and its settings parse
// into the Config it builds; a queue size that is not a positive integer
// is refused naming its variable.
func TestConfigFromEnv(t *testing.T) {
	t.Setenv("K_SINK", "http://broker.example/kmep/default")
	var cfg config
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.Redelivery) != relay.DefaultRedelivery || int(cfg.QueueSize) != relay.DefaultQueueSize ||
		int(cfg.BulkQueueSize) != relay.DefaultBulkQueueSize || cfg.FIFO {
		t.Fatalf("defaults %v %d %d %v, want relay's %v %d %d false", time.Duration(cfg.Redelivery), cfg.QueueSize,
			cfg.BulkQueueSize, cfg.FIFO, relay.DefaultRedelivery, relay.DefaultQueueSize, relay.DefaultBulkQueueSize)
	}

	t.Setenv("KMEP_RELAY_QUEUE_SIZE", "16")
	t.Setenv("KMEP_RELAY_BULK_QUEUE_SIZE", "65536")
	t.Setenv("KMEP_RELAY_FIFO", "true")
	cfg = config{}
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.QueueSize != 16 || cfg.BulkQueueSize != 65536 || !cfg.FIFO {
		t.Fatalf("set: %d %d %v", cfg.QueueSize, cfg.BulkQueueSize, cfg.FIFO)
	}

	for _, bad := range []string{"0", "-1", "1e3", "99999999999999999999", "12\t"} {
		t.Setenv("KMEP_RELAY_BULK_QUEUE_SIZE", bad)
		cfg = config{}
		err := server.Parse(&cfg)
		if err == nil || !strings.Contains(err.Error(), "KMEP_RELAY_BULK_QUEUE_SIZE") {
			t.Errorf("KMEP_RELAY_BULK_QUEUE_SIZE=%q: %v, want an error naming it", bad, err)
		}
	}
	t.Setenv("KMEP_RELAY_BULK_QUEUE_SIZE", "")
	t.Setenv("KMEP_RELAY_FIFO", "yes please")
	if err := server.Parse(&config{}); err == nil || !strings.Contains(err.Error(), "KMEP_RELAY_FIFO") {
		t.Errorf("KMEP_RELAY_FIFO=%q: %v, want an error naming it", "yes please", err)
	}
}
