package server_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store/kit/server"
)

// Run makes one server span per request, named by the route template, a
// child of a well-formed traceparent header and the root of a new trace
// otherwise (the request is served as ever); /healthz and GET /metrics
// are not traced; the access log names the trace.
func TestServerSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	logs := &syncBuffer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/applications/{appInstanceId}/things", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	})
	mux.HandleFunc("POST /v1/boom", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("up 1\n")) })
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- server.Run(ctx, server.Options{Listener: ln, Handler: mux, Log: server.NewLogger(logs, "test", "info"), TracerProvider: tp})
	}()
	defer func() { cancel(); <-ran }()
	base := "http://" + ln.Addr().String()

	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name, method, path, traceparent string
		span                            string // "": no span
		status                          int
		parent                          bool
		code                            codes.Code
	}{
		{"route template", "GET", "/v1/applications/app-7/things?access_token=x", "", "GET /v1/applications/{appInstanceId}/things", 403, false, codes.Unset},
		{"continues the caller's trace", "GET", "/v1/applications/app-8/things", incoming, "GET /v1/applications/{appInstanceId}/things", 403, true, codes.Unset},
		{"malformed traceparent ignored", "GET", "/v1/applications/app-9/things", "00-4bf92f3577b34da6a3ce929d0e0e4736-zz-01", "GET /v1/applications/{appInstanceId}/things", 403, false, codes.Unset},
		{"method in the pattern", "POST", "/v1/boom", "", "POST /v1/boom", 502, false, codes.Error},
		{"unmatched", "GET", "/nowhere", "", "GET", 404, false, codes.Unset},
		{"health", "GET", "/healthz", "", "", 200, false, codes.Unset},
		{"metrics", "GET", "/metrics", "", "", 200, false, codes.Unset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.Reset()
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			if tc.traceparent != "" {
				req.Header.Set("traceparent", tc.traceparent)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			spans := rec.Ended()
			if tc.span == "" {
				if len(spans) != 0 {
					t.Fatalf("%d spans, want none", len(spans))
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Name() != tc.span || s.SpanKind() != oteltrace.SpanKindServer || s.Status().Code != tc.code {
				t.Errorf("span %q (%v, status %v), want %q (server, %v)", s.Name(), s.SpanKind(), s.Status(), tc.span, tc.code)
			}
			if tc.parent != (s.Parent().SpanID().String() == incoming[36:52] && s.SpanContext().TraceID().String() == incoming[3:35]) {
				t.Errorf("span's parent %v in trace %s; want the caller's span: %v", s.Parent(), s.SpanContext().TraceID(), tc.parent)
			}
			if !tc.parent && s.Parent().IsValid() {
				t.Errorf("span has parent %v, want a new trace", s.Parent())
			}
			for _, kv := range s.Attributes() {
				if kv.Key == "http.response.status_code" && kv.Value.AsInt64() != int64(tc.status) {
					t.Errorf("status attribute %d, want %d", kv.Value.AsInt64(), tc.status)
				}
				if v := kv.Value.Emit(); kv.Key == "url.path" && v != tc.path[:len(tc.path)-len(queryOf(tc.path))] {
					t.Errorf("url.path %q", v)
				}
			}
			lines := logs.lines(t, "request")
			if l := lines[len(lines)-1]; l["trace_id"] != s.SpanContext().TraceID().String() {
				t.Errorf("access log line %v: trace_id, want %s", l, s.SpanContext().TraceID())
			}
		})
	}
}

func queryOf(p string) string {
	for i := range p {
		if p[i] == '?' {
			return p[i:]
		}
	}
	return ""
}
