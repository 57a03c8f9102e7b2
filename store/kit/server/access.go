package server

import (
	"log/slog"
	"net/http"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
)

// UnmatchedRoute is the route an access log line names for a request no
// http.ServeMux pattern served.
const UnmatchedRoute = "unmatched"

// AccessLog logs one info line "request" per request next serves, after it
// is answered:
//
//	method, route, status, duration[, appInstanceId][, trace_id]
//
// route is the pattern of the innermost http.ServeMux that served the
// request (r.Pattern once next returns: the template, such as
// "/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services"), or
// UnmatchedRoute; appInstanceId is the path's {appInstanceId} when the
// route has one; trace_id is the request's trace id when it has one (the
// span Trace starts, or the caller's traceparent under a no-op
// TracerProvider). Neither the query, the headers nor the body is logged,
// so no token, signature or secret reaches the log.
func AccessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = UnmatchedRoute
		}
		status := rec.Code
		if status == 0 {
			status = http.StatusOK
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", status), slog.Duration("duration", time.Since(start))}
		if app := r.PathValue("appInstanceId"); app != "" {
			attrs = append(attrs, slog.String("appInstanceId", app))
		}
		if sc := oteltrace.SpanContextFromContext(r.Context()); sc.IsValid() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// StatusRecorder remembers the status a handler wrote (Code, 0 until it
// writes), for middleware that reports it (the access log, the request
// metrics). Unwrap lets http.ResponseController reach the connection
// (flushes, deadlines).
type StatusRecorder struct {
	http.ResponseWriter
	Code int
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.Code == 0 {
		s.Code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Code == 0 {
		s.Code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes a flush on (a streamed answer such as server-sent events).
func (s *StatusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap is the wrapped ResponseWriter.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
