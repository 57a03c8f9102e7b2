package broker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/kmep-io/kmep/local/broker"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// TestDeliveriesContinueTheEventsTrace: every delivery attempt is a span
// "broker deliver", a child of the trace context the event came with (a
// retry too: not a child of the failed attempt); the receiver gets the
// event with its traceparent extension set to that span, in process with
// the span in its context, over HTTP with a traceparent header as well;
// the other extensions pass through.
func TestDeliveriesContinueTheEventsTrace(t *testing.T) {
	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	type got struct{ ctx, ext, header, app string }
	var mu sync.Mutex
	var inProcess, overHTTP []got
	calls := 0
	httpSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ext, _ := e.Extensions()["traceparent"].(string)
		app, _ := e.Extensions()["kmepapp"].(string)
		mu.Lock()
		overHTTP = append(overHTTP, got{ext: ext, header: r.Header.Get("traceparent"), app: app})
		mu.Unlock()
	}))
	defer httpSrv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(), TracerProvider: tp,
		Resolve: func(dest duckv1.Destination) (broker.Target, error) {
			if dest.URI != nil {
				return broker.Target{URL: dest.URI.String()}, nil
			}
			return broker.Target{Receive: func(ctx context.Context, e cloudevents.Event) protocol.Result {
				ext, _ := e.Extensions()["traceparent"].(string)
				app, _ := e.Extensions()["kmepapp"].(string)
				mu.Lock()
				defer mu.Unlock()
				calls++
				inProcess = append(inProcess, got{ctx: trace.TraceParent(ctx), ext: ext, app: app})
				if calls == 1 {
					return cehttp.NewResult(http.StatusBadGateway, "try again")
				}
				return protocol.ResultACK
			}}, nil
		},
		Triggers: load(t,
			trigger("inproc", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: notify}}\n  delivery: {retry: 1}\n"),
			trigger("http", "  subscriber: {uri: "+httpSrv.URL+"/}\n"),
		)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	e := event("t", "/s", "", map[string]string{"traceparent": incoming, "kmepapp": "app-1"})
	if res := b.Send(context.Background(), e); !cloudevents.IsACK(res) {
		t.Fatal(res)
	}
	waitFor(t, 5*time.Second, "both delivered", func() bool { return b.Stats().Delivered == 2 })

	spans := map[string]sdktrace.ReadOnlySpan{} // by traceparent
	for _, s := range rec.Ended() {
		if s.Name() != "broker deliver" {
			continue
		}
		if s.Parent().TraceID().String() != incoming[3:35] || s.Parent().SpanID().String() != incoming[36:52] {
			t.Errorf("broker deliver span's parent %v, want the event's %s", s.Parent(), incoming)
		}
		spans[trace.TraceParent(oteltrace.ContextWithSpanContext(context.Background(), s.SpanContext()))] = s
	}
	if len(spans) != 3 {
		t.Fatalf("%d broker deliver spans, want 3 (two attempts in process, one over HTTP)", len(spans))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(inProcess) != 2 || len(overHTTP) != 1 {
		t.Fatalf("deliveries: %d in process, %d over HTTP", len(inProcess), len(overHTTP))
	}
	for _, g := range append(inProcess, overHTTP...) {
		if _, ok := spans[g.ext]; !ok {
			t.Errorf("a receiver got traceparent %q: not a broker deliver span", g.ext)
		}
		if g.app != "app-1" {
			t.Errorf("kmepapp extension %q did not pass through", g.app)
		}
	}
	for _, g := range inProcess {
		if g.ctx != g.ext {
			t.Errorf("in process: the context's span %q is not the event's %q", g.ctx, g.ext)
		}
	}
	if inProcess[0].ext == inProcess[1].ext {
		t.Errorf("the retry reused the first attempt's span")
	}
	if g := overHTTP[0]; g.header != g.ext {
		t.Errorf("over HTTP: traceparent header %q, extension %q", g.header, g.ext)
	}
}
