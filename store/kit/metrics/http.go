package metrics

import (
	"github.com/kmep-io/kmep/store/kit/server"
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
		rec := &server.StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route, method := r.Pattern, methodLabel(r.Method)
		if route == "" {
			route = Unmatched
		}
		code := rec.Code
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
