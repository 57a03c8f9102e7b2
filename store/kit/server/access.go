package server

import (
	"log/slog"
	"net/http"
	"time"
)

// UnmatchedRoute is the route an access log line names for a request no
// http.ServeMux pattern served.
const UnmatchedRoute = "unmatched"

// AccessLog logs one info line "request" per request next serves, after it
// is answered:
//
//	method, route, status, duration[, appInstanceId]
//
// route is the pattern of the innermost http.ServeMux that served the
// request (r.Pattern once next returns: the template, such as
// "/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services"), or
// UnmatchedRoute; appInstanceId is the path's {appInstanceId} when the
// route has one. Neither the query, the headers nor the body is logged, so
// no token, signature or secret reaches the log.
func AccessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = UnmatchedRoute
		}
		status := rec.code
		if status == 0 {
			status = http.StatusOK
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", status), slog.Duration("duration", time.Since(start))}
		if app := r.PathValue("appInstanceId"); app != "" {
			attrs = append(attrs, slog.String("appInstanceId", app))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// statusWriter remembers the status a handler wrote. Unwrap lets
// http.ResponseController reach the connection (flushes, deadlines).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes a flush on (a streamed answer such as server-sent events).
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
