package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/server"
	"github.com/kmep-io/kmep/triggers/notify"
)

// The config's defaults are notify's, and a malformed KMEP_CALLBACK_DENY
// stops the binary before it serves, naming it.
func TestConfig(t *testing.T) {
	var cfg config
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	if int(cfg.Concurrency) != notify.DefaultConcurrency || time.Duration(cfg.Timeout) != notify.DefaultTimeout {
		t.Fatalf("defaults %d %v, want notify's %d %v", cfg.Concurrency, cfg.Timeout, notify.DefaultConcurrency, notify.DefaultTimeout)
	}
	t.Setenv("KMEP_CALLBACK_DENY", "internal.example")
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), slog.New(slog.DiscardHandler), cfg); err == nil || !strings.Contains(err.Error(), "KMEP_CALLBACK_DENY") {
		t.Fatalf("run with a host name in KMEP_CALLBACK_DENY: %v", err)
	}
}
