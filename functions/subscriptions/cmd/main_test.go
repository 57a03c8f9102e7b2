package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

// A malformed KMEP_CALLBACK_DENY stops the binary before it serves,
// naming the variable.
func TestRunRefusesMalformedCallbackDeny(t *testing.T) {
	t.Setenv("KMEP_CALLBACK_DENY", "10.0.0.0/33")
	err := run(context.Background(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "KMEP_CALLBACK_DENY") {
		t.Fatalf("run = %v, want an error naming KMEP_CALLBACK_DENY", err)
	}
}
