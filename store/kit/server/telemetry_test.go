package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kmep-io/kmep/store/kit/server"
)

// collector is an OTLP trace receiver (HTTP and gRPC) that records the
// span names and service names it was sent.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []string // "service.name/span name"
	paths []string // HTTP request paths
}

func (c *collector) record(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, service+"/"+s.GetName())
			}
		}
	}
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.record(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "want OTLP protobuf", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.paths = append(c.paths, r.URL.Path)
	c.mu.Unlock()
	c.record(&req)
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

func (c *collector) got() ([]string, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.spans...), append([]string(nil), c.paths...)
}

// otelEnv clears the OpenTelemetry variables Tracing and the exporter
// read, sets env, and puts the global TracerProvider back to a no-op one
// when the test ends.
func otelEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME",
		"OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		t.Setenv(k, env[k])
	}
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
}

// Without an endpoint (or with the SDK or the exporter turned off)
// Tracing leaves a no-op TracerProvider: spans are not recording and
// nothing is sent; the W3C propagator is installed either way.
func TestTracingOffWithoutEndpoint(t *testing.T) {
	c := &collector{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"no endpoint", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		{"SDK disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_SDK_DISABLED": "true"}},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_TRACES_EXPORTER": "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			otelEnv(t, tc.env)
			otel.SetTracerProvider(noop.NewTracerProvider())
			otel.SetTextMapPropagator(nil)
			shutdown, err := server.Tracing(context.Background(), "testbin", quietLog())
			if err != nil {
				t.Fatal(err)
			}
			_, span := otel.Tracer("t").Start(context.Background(), "x")
			if span.IsRecording() {
				t.Error("a span records without an endpoint")
			}
			span.End()
			if err := shutdown(context.Background()); err != nil {
				t.Error(err)
			}
			if f := otel.GetTextMapPropagator().Fields(); strings.Join(f, ",") != "traceparent,tracestate" {
				t.Errorf("global propagator fields %v, want W3C Trace Context's", f)
			}
		})
	}
	if spans, _ := c.got(); len(spans) != 0 {
		t.Errorf("exported without an endpoint: %v", spans)
	}
}

// With an endpoint, spans reach it over OTLP/HTTP (the default protocol)
// or gRPC, named after the component; the traces-only variables win over
// the general ones.
func TestTracingExports(t *testing.T) {
	c := &collector{}
	httpSrv := httptest.NewServer(c)
	defer httpSrv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(g, c)
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()
	grpcURL := "http://" + ln.Addr().String()

	for _, tc := range []struct {
		name     string
		env      map[string]string
		via      string // "http" or "grpc"
		path     string // the HTTP path the collector saw
		wantName string // the service name in the resource
	}{
		{"http by default", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSrv.URL}, "http", "/v1/traces", "testbin"},
		{"http/protobuf", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSrv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http", "/v1/traces", "testbin"},
		{"traces endpoint as is", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": httpSrv.URL + "/custom/traces"}, "http", "/custom/traces", "testbin"},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": grpcURL, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc", "", "testbin"},
		{"traces protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": grpcURL, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "grpc", "", "testbin"},
		{"OTEL_SERVICE_NAME wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSrv.URL, "OTEL_SERVICE_NAME": "edge-1-notify"}, "http", "/v1/traces", "edge-1-notify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			otelEnv(t, tc.env)
			before, paths := c.got()
			shutdown, err := server.Tracing(context.Background(), "testbin", quietLog())
			if err != nil {
				t.Fatal(err)
			}
			_, span := otel.Tracer("t").Start(context.Background(), "span-"+tc.name)
			span.End()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			after, paths2 := c.got()
			if want := tc.wantName + "/span-" + tc.name; len(after) != len(before)+1 || after[len(after)-1] != want {
				t.Fatalf("collector got %v, want %q more", after[len(before):], want)
			}
			newPaths := paths2[len(paths):]
			if tc.via == "http" && (len(newPaths) != 1 || newPaths[0] != tc.path) {
				t.Errorf("HTTP paths %v, want %s", newPaths, tc.path)
			}
			if tc.via == "grpc" && len(newPaths) != 0 {
				t.Errorf("sent over HTTP (%v), want gRPC", newPaths)
			}
		})
	}
}

// A protocol or exporter kmep cannot honour stops the binary with an error
// naming the variable.
func TestTracingRefusesUnknownSettings(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "carrier-pigeon"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			otelEnv(t, tc.env)
			_, err := server.Tracing(context.Background(), "testbin", quietLog())
			if err == nil || !strings.HasPrefix(err.Error(), tc.want+": ") {
				t.Fatalf("err %v, want one naming %s", err, tc.want)
			}
		})
	}
}
