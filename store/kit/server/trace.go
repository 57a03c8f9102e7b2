package server

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// traceScope is the instrumentation scope of the server spans.
const traceScope = "github.com/kmep-io/kmep/store/kit/server"

// Trace starts one server span per request next serves, with tp's tracer
// (nil: the global TracerProvider, which Main installs), as a child of the
// request's W3C traceparent header; a malformed or missing header starts a
// new trace (never an error). Once next returns the span is named
// "METHOD route", route being the template of the innermost
// http.ServeMux pattern that served the request (as AccessLog's; "METHOD"
// alone when none did), so names do not grow with ids, and it records the
// status (a 5xx marks it as an error). The query is not recorded. GET and
// HEAD /metrics (metrics.Mount's scrapes) are not traced.
func Trace(tp oteltrace.TracerProvider, next http.Handler) http.Handler {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	t := tp.Tracer(traceScope)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.Start(ctx, r.Method, oteltrace.WithSpanKind(oteltrace.SpanKindServer),
			oteltrace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		rec := &StatusRecorder{ResponseWriter: w}
		r = r.WithContext(ctx)
		next.ServeHTTP(rec, r)
		status := rec.Code
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if route := routeOf(r.Pattern); route != "" {
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	})
}

// routeOf is the path template of a ServeMux pattern ("[METHOD ][HOST]/path").
func routeOf(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimLeft(p, " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	return pattern
}
