package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// HealthAddr is where a long-running agent's binary serves GET /healthz,
// given the values of KMEP_HEALTH_ADDR (addr) and PORT (port), which main
// reads: addr, else ":port" when only port is set, else "" (no HTTP port).
func HealthAddr(addr, port string) string {
	if addr == "" && port != "" {
		return ":" + port
	}
	return addr
}

// AgentOptions configure RunAgent.
type AgentOptions struct {
	// HealthAddr is the listen address of GET /healthz and Handler (see
	// the HealthAddr function). Zero value: no HTTP port is opened, unless
	// Listener is set.
	HealthAddr string
	// Listener, when set, is used instead of listening on HealthAddr.
	Listener net.Listener
	// Handler serves everything but /healthz, e.g. GET /metrics. Zero value:
	// 404 for everything else.
	Handler http.Handler
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
}

// RunAgent is the body of a long-running agent's binary once it is wired:
// it runs run (the agent's Run) and, when o asks for an HTTP port, serves
// /healthz and o.Handler beside it (Run's Options, drained within 1 s). It
// returns when run returns, with run's error, after the HTTP server has
// stopped. Should the HTTP server end first (it could not listen), RunAgent
// cancels run's context, waits for run and returns the server's error
// wrapped as "health server: ...".
func RunAgent(ctx context.Context, o AgentOptions, run func(ctx context.Context) error) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var health chan error // nil without an HTTP server: never ready
	if o.HealthAddr != "" || o.Listener != nil {
		health = make(chan error, 1)
		go func() {
			health <- Run(actx, Options{Addr: o.HealthAddr, Listener: o.Listener, Handler: orNotFound(o.Handler),
				Log: o.Log, DrainTimeout: time.Second})
		}()
	}
	done := make(chan error, 1)
	go func() { done <- run(actx) }()
	select {
	case err := <-done:
		if health != nil {
			cancel()
			<-health // drained: nothing outlives RunAgent
		}
		return err
	case herr := <-health: // before ctx ends, only when it could not listen
		cancel()
		err := <-done
		if herr != nil {
			return fmt.Errorf("health server: %w", herr)
		}
		return err
	}
}

func orNotFound(h http.Handler) http.Handler {
	if h == nil {
		return http.NotFoundHandler()
	}
	return h
}
