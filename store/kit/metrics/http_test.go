package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

// api is shaped like the all-in-one: an outer mux hands a prefix to an
// API's own mux, whose pattern is the one the request is counted under.
func api() http.Handler {
	inner := http.NewServeMux()
	inner.HandleFunc("/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			return
		}
		_, _ = io.WriteString(w, "[]")
	})
	outer := http.NewServeMux()
	outer.Handle("/mep/mec_service_mgmt/v1/", inner)
	outer.HandleFunc("GET /plain", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusTeapot) })
	return outer
}

func TestRouteLabelIsTheTemplate(t *testing.T) {
	reg := metrics.NewRegistry()
	h := metrics.Mount(reg, api())
	for _, req := range []struct{ method, path string }{
		{"GET", "/mep/mec_service_mgmt/v1/applications/app-1/services"},
		{"GET", "/mep/mec_service_mgmt/v1/applications/app-2/services"},
		{"POST", "/mep/mec_service_mgmt/v1/applications/app-1/services"},
		{"GET", "/plain"},
		{"GET", "/nowhere/app-1"},
		{"BREW", "/plain"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}
	const tmpl = "/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services"
	want := `
# HELP kmep_http_requests_total HTTP requests served, by route template, method and status code.
# TYPE kmep_http_requests_total counter
kmep_http_requests_total{code="200",method="GET",route="` + tmpl + `"} 2
kmep_http_requests_total{code="201",method="POST",route="` + tmpl + `"} 1
kmep_http_requests_total{code="404",method="GET",route="unmatched"} 1
kmep_http_requests_total{code="405",method="other",route="unmatched"} 1
kmep_http_requests_total{code="418",method="GET",route="GET /plain"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kmep_http_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "kmep_http_request_duration_seconds"); n != 5 {
		t.Errorf("latency series = %d, want 5 (route x method pairs)", n)
	}

	// /metrics itself answers, is not counted, and names no path's ID.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", metrics.Path, nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "kmep_http_requests_total") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics: %d\n%s", rec.Code, body)
	}
	if strings.Contains(body, "app-1") || strings.Contains(body, "app-2") {
		t.Error("/metrics names an appInstanceId")
	}
}

// A handler that writes without WriteHeader is a 200; a flush reaches the
// connection through the recorder.
func TestInstrumentKeepsTheWriter(t *testing.T) {
	reg := metrics.NewRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "a")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
	})
	rec := httptest.NewRecorder()
	metrics.Instrument(reg, mux).ServeHTTP(rec, httptest.NewRequest("GET", "/stream", nil))
	if !rec.Flushed {
		t.Error("not flushed")
	}
	want := `
# HELP kmep_http_requests_total HTTP requests served, by route template, method and status code.
# TYPE kmep_http_requests_total counter
kmep_http_requests_total{code="200",method="GET",route="GET /stream"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kmep_http_requests_total"); err != nil {
		t.Error(err)
	}
}

// Scrapes of Path make no trace (server.Trace leaves GET /metrics alone);
// the API's requests behind Mount do, named by their template.
func TestScrapesAreNotTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	h := server.Trace(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), metrics.Mount(metrics.NewRegistry(), api()))
	for _, p := range []string{metrics.Path, "/mep/mec_service_mgmt/v1/applications/app-1/services"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "GET /mep/mec_service_mgmt/v1/applications/{appInstanceId}/services" {
		t.Fatalf("spans %q, want only the API request's", names)
	}
}
