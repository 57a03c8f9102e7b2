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

// Main is the body of every kmep binary's main: the whole of it is
// server.Main("name", run). It answers the command line first: --version
// prints the version, -h (--help) the binary's settings (Usage), and both
// exit 0 without starting anything; any other argument exits 2. It then
// reads the environment into the binary's config C (Parse: a struct with
// envconfig tags that embeds Base, directly or through Serve or Agent),
// builds the component's logger (NewLogger on stderr at C's
// KMEP_LOG_LEVEL), sets tracing up from the OpenTelemetry environment
// (Tracing: spans are exported over OTLP only when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set), runs run with a context that ends on SIGTERM or an interrupt,
// flushes the spans left (3 s at most), and when the config, the tracing
// settings or run fail logs "exit" with the error and exits with status 1.
// run wires the binary and blocks until ctx ends.
func Main[C any, P interface {
	*C
	base() *Base
}](component string, run func(ctx context.Context, log *slog.Logger, cfg C) error) {
	var cfg C
	if code, done := handleArgs(os.Stdout, os.Stderr, component, &cfg, os.Args[1:]); done {
		os.Exit(code)
	}
	err := Parse(&cfg)
	level := P(&cfg).base().LogLevel
	if err != nil {
		level = os.Getenv("KMEP_LOG_LEVEL") // the config failed: still the level asked for
	}
	log := NewLogger(os.Stderr, component, level)
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
	shutdown, err := Tracing(context.Background(), component, log)
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err = run(ctx, log, cfg)
	stop()
	fctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
	if ferr := shutdown(fctx); ferr != nil {
		log.Warn("traces not exported", "err", ferr)
	}
	cancel()
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

// traceFlushTimeout bounds the export of the spans left when a binary
// stops (inside Knative's 30 s termination grace period, after Run's drain).
const traceFlushTimeout = 3 * time.Second

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
