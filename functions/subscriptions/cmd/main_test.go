package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/server"
)

// A malformed KMEP_CALLBACK_DENY stops the binary before it serves,
// naming the variable.
func TestRunRefusesMalformedCallbackDeny(t *testing.T) {
	t.Setenv("KMEP_CALLBACK_DENY", "10.0.0.0/33")
	var cfg config
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), slog.New(slog.DiscardHandler), cfg)
	if err == nil || !strings.Contains(err.Error(), "KMEP_CALLBACK_DENY") {
		t.Fatalf("run = %v, want an error naming KMEP_CALLBACK_DENY", err)
	}
}
