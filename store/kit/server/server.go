// Package server serves a function's handler under the Knative runtime
// contract: it listens on the given address (the binary passes ":$PORT"),
// answers GET /healthz (503 until Options.Ready says the handler can
// serve), bounds the time a client may take to send request headers (10 s)
// and bodies (Options.BodyTimeout, BodyMinRate), makes a server span of
// every other request (Trace: W3C trace context, named by route template),
// and on shutdown stops accepting connections and drains in-flight
// requests within a grace period. Main, NewLogger, Tracing and the Env
// helpers are the rest of what every kmep binary's main does; RunAgent and
// HealthAddr run a long-running agent with its /healthz port.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
)

// Options configure Run.
type Options struct {
	// Addr is the listen address, e.g. ":8080". Required unless Listener is set.
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// Handler serves everything but /healthz. Required.
	Handler http.Handler
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// NoAccessLog turns off the access log (KMEP_ACCESS_LOG=false). Zero
	// value: one info line per request (AccessLog), /healthz excepted.
	NoAccessLog bool
	// DrainTimeout bounds the graceful shutdown. Zero value: 25 s (inside
	// Knative's default 30 s termination grace period).
	DrainTimeout time.Duration
	// BodyTimeout bounds the time a client may take to send a request body
	// beyond what BodyMinRate allows for its size, counted from the
	// handler's first read; a slower body fails the handler's read (408)
	// and closes the connection. Zero value: DefaultBodyTimeout (10 s).
	BodyTimeout time.Duration
	// BodyMinRate is the slowest average rate, in bytes per second, at
	// which a body may keep arriving after BodyTimeout. Zero value:
	// DefaultBodyMinRate (16 KiB/s).
	BodyMinRate int64
	// TracerProvider makes the server span of each request (Trace).
	// Zero value: the global one (Main installs it: see Tracing).
	TracerProvider oteltrace.TracerProvider
	// Ready reports whether Handler can serve yet; see Health. Zero value:
	// ready as soon as the process serves.
	Ready func() error
}

// Health answers GET /healthz with 200 "ok" once ready (nil: at once)
// has returned nil, and with 503 "starting: <reason>" (Retry-After: 1)
// until then, so that Knative (whose readiness probe it is) routes no
// request to a pod that would refuse them all, e.g. one whose Verifier
// has not loaded the token revocations yet. Once ready it stays 200: a
// function's dependencies are reached lazily, and a failure of one later
// is the 503 of the requests that need it, not a pod taken out of service.
func Health(ready func() error, next http.Handler) http.Handler {
	var up atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		if !up.Load() && ready != nil {
			if err := ready(); err != nil {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "starting: %v\n", err)
				return
			}
		}
		up.Store(true)
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Run serves until ctx ends, then drains. It returns nil after a clean
// shutdown.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 25 * time.Second
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.BodyMinRate == 0 {
		o.BodyMinRate = DefaultBodyMinRate
	}
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", o.Addr); err != nil {
			return fmt.Errorf("listen %s: %w", o.Addr, err)
		}
	}
	h := o.Handler
	if !o.NoAccessLog {
		h = AccessLog(o.Log, h)
	}
	h = Trace(o.TracerProvider, h)
	srv := &http.Server{
		Handler:           boundBodies(Health(o.Ready, h), o.BodyTimeout, o.BodyMinRate),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	o.Log.Info("serving", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	o.Log.Info("draining", "timeout", o.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// NewLogger is the JSON logger every kmep binary builds once in main,
// tagged with its component; level is "debug", "info", "warn" or "error"
// (anything else: info). Durations are written as strings ("1.5s"), not
// as nanosecond counts (DurationsAsStrings).
func NewLogger(w io.Writer, component, level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: DurationsAsStrings})).With("component", component)
}

// DurationsAsStrings is a slog.HandlerOptions.ReplaceAttr that writes a
// time.Duration attribute as its String() ("250ms"), which a person reads
// and Go's time.ParseDuration parses back.
func DurationsAsStrings(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
