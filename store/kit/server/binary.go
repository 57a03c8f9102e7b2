package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Main is the body of every kmep binary's main: it builds the component's
// logger (NewLogger on stderr, its level from KMEP_LOG_LEVEL: the one
// environment variable read here, so that even a configuration error is
// logged at the level asked for), runs run with a context that ends on
// SIGTERM or an interrupt, and when run fails logs "exit" with the error
// and exits with status 1. run reads the rest of the environment, wires
// the binary and blocks until ctx ends.
func Main(component string, run func(ctx context.Context, log *slog.Logger) error) {
	log := NewLogger(os.Stderr, component, os.Getenv("KMEP_LOG_LEVEL"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, log)
	stop()
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

// Env returns the environment variable key, or def when it is unset or
// empty. For main packages only: no other package reads the environment.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvDuration returns the environment variable key as a positive duration
// ("1s", "250ms"), or def when it is unset or empty; anything else is an
// error naming key. For main packages only.
func EnvDuration(key string, def time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(Env(key, def.String()))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: want a positive duration like %s", key, def)
	}
	return d, nil
}

// EnvInt returns the environment variable key as a positive integer, or
// def when it is unset or empty; anything else is an error naming key.
// For main packages only.
func EnvInt(key string, def int) (int, error) {
	n, err := strconv.Atoi(Env(key, strconv.Itoa(def)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s: want a positive integer", key)
	}
	return n, nil
}
