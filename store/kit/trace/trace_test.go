package trace_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store/kit/trace"
)

const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// Extract takes a well-formed traceparent (and its tracestate) and refuses
// anything else, leaving the context as it was; Inject gives back what
// Extract took.
func TestExtractInject(t *testing.T) {
	for _, tc := range []struct {
		name, tp, ts string
		ok           bool
		wantTS       string
	}{
		{"well formed", good, "", true, ""},
		{"with tracestate", good, "vendor=abc,other=1", true, "vendor=abc,other=1"},
		{"malformed tracestate dropped", good, "=,,bad key=1", true, ""},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "", true, ""},
		{"future version with more fields", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "", true, ""},
		{"empty", "", "", false, ""},
		{"garbage", "hello", "", false, ""},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", false, ""},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false, ""},
		{"upper-case hex", strings.ToUpper(good), "", false, ""},
		{"short trace id", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "", false, ""},
		{"version 00 with more fields", good + "-x", "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := context.WithValue(context.Background(), struct{}{}, "kept")
			ctx, ok := trace.Extract(base, tc.tp, tc.ts)
			if ok != tc.ok || trace.Valid(tc.tp) != tc.ok {
				t.Fatalf("Extract ok %v, Valid %v; want %v", ok, trace.Valid(tc.tp), tc.ok)
			}
			if ctx.Value(struct{}{}) != "kept" {
				t.Error("Extract lost the context's values")
			}
			tp, ts := trace.Inject(ctx)
			if !tc.ok {
				if ctx != base || tp != "" || ts != "" {
					t.Errorf("refused traceparent: context changed (%q, %q)", tp, ts)
				}
				return
			}
			if tp[3:52] != tc.tp[3:52] || ts != tc.wantTS || trace.TraceParent(ctx) != tp {
				t.Errorf("Inject = %q, %q; want the trace and span of %q and tracestate %q", tp, ts, tc.tp, tc.wantTS)
			}
		})
	}
	if tp, ts := trace.Inject(context.Background()); tp != "" || ts != "" {
		t.Errorf("Inject of no span: %q %q", tp, ts)
	}
}

// StartClient makes a client span below the request's context, puts its
// traceparent in a copy of the request's headers (the request itself is
// left alone), records the status, and keeps the URL's query and user
// information out of the span.
func TestStartClient(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	parent, _ := trace.Extract(context.Background(), good, "")
	for _, tc := range []struct {
		name   string
		status int
		err    error
		code   codes.Code
	}{
		{"2xx", 204, nil, codes.Unset},
		{"4xx", 404, nil, codes.Error},
		{"5xx", 503, nil, codes.Error},
		{"transport error", 0, errors.New("dial tcp: refused"), codes.Error},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.Reset()
			req, _ := http.NewRequestWithContext(parent, http.MethodPost, "http://user:pw@127.0.0.1:8443/cb?token=secret", nil)
			req.Header.Set("X-Kept", "1")
			out, end := trace.StartClient(tr, req)
			if req.Header.Get("traceparent") != "" {
				t.Error("StartClient changed the request's own headers")
			}
			if out.Header.Get("X-Kept") != "1" {
				t.Error("the copy lost the request's headers")
			}
			var resp *http.Response
			if tc.err == nil {
				resp = &http.Response{StatusCode: tc.status}
			}
			end(resp, tc.err)
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			s := spans[0]
			if s.SpanKind() != oteltrace.SpanKindClient || s.Name() != "POST" || s.Parent().SpanID().String() != good[36:52] {
				t.Errorf("span %q kind %v parent %v", s.Name(), s.SpanKind(), s.Parent())
			}
			if got := out.Header.Get("traceparent"); got != trace.TraceParent(oteltrace.ContextWithSpanContext(context.Background(), s.SpanContext())) {
				t.Errorf("traceparent header %q is not the client span's", got)
			}
			if trace.TraceParent(out.Context()) != out.Header.Get("traceparent") {
				t.Error("the copy's context is not the client span's")
			}
			if s.Status().Code != tc.code {
				t.Errorf("status %v, want %v", s.Status(), tc.code)
			}
			for _, kv := range s.Attributes() {
				if v := kv.Value.Emit(); strings.Contains(v, "secret") || strings.Contains(v, "pw") {
					t.Errorf("attribute %s = %q leaks the URL's query or password", kv.Key, v)
				}
			}
		})
	}
}

// Transport sends what StartClient prepared: the server sees the client
// span's traceparent.
func TestTransport(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("traceparent") }))
	defer srv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c := &http.Client{Transport: trace.Transport(tp, nil)}
	ctx, _ := trace.Extract(context.Background(), good, "")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := rec.Ended()
	if len(spans) != 1 || got != trace.TraceParent(oteltrace.ContextWithSpanContext(context.Background(), spans[0].SpanContext())) {
		t.Fatalf("server got traceparent %q; spans %v", got, spans)
	}
	if spans[0].SpanContext().TraceID().String() != good[3:35] {
		t.Errorf("client span in trace %s, want %s", spans[0].SpanContext().TraceID(), good[3:35])
	}
}
