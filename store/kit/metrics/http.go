package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Unmatched is the route label of a request no ServeMux pattern served.
const Unmatched = "unmatched"

// Instrument counts the requests next serves into reg:
//
//	kmep_http_requests_total{route, method, code}
//	kmep_http_request_duration_seconds{route, method} (histogram)
//
// route is the pattern of the innermost http.ServeMux that served the
// request (r.Pattern once next returns: the template, such as
// "/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services", never
// the raw path), or Unmatched. method is one of the standard methods or
// "other", so that no client can grow the label set.
func Instrument(reg prometheus.Registerer, next http.Handler) http.Handler {
	f := With(reg)
	requests := f.CounterVec("kmep_http_requests_total", "HTTP requests served, by route template, method and status code.",
		"route", "method", "code")
	latency := f.HistogramVec("kmep_http_request_duration_seconds", "Time to serve an HTTP request, by route template and method.",
		nil, "route", "method")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route, method := r.Pattern, methodLabel(r.Method)
		if route == "" {
			route = Unmatched
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
		latency.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	})
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// statusRecorder remembers the status a handler wrote. Unwrap lets
// http.ResponseController reach the connection (flushes, deadlines).
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes a flush on (a streamed answer such as server-sent events).
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
