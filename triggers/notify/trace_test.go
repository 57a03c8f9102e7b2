package notify_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/trace"
	"github.com/kmep-io/kmep/triggers/notify"
)

// TestCallbacksContinueTheEventsTrace: Handle makes a span "notify" whose
// parent is the event's traceparent (or the context's span of that same
// trace, which is closer; a context span of another trace is linked to),
// and each callback POST is a client span below it whose traceparent the
// subscriber receives. A malformed traceparent is ignored (a new trace).
// A callback that keeps failing marks its spans and the event's as errors.
func TestCallbacksContinueTheEventsTrace(t *testing.T) {
	const (
		event = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		// closer is a span of the event's trace below it; other is of
		// another trace.
		closer = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
		other  = "00-0af7651916cd43dd8448eb211c80319c-2222222222222222-01"
	)
	for _, tc := range []struct {
		name, ext, ctx string
		fail           bool
		// parent is the traceparent of the notify span's parent ("": a
		// root); link, of the span linked to.
		parent, link string
	}{
		{name: "from the event", ext: event, parent: event},
		{name: "context span of the same trace", ext: event, ctx: closer, parent: closer},
		{name: "context span of another trace", ext: event, ctx: other, parent: event, link: other},
		{name: "malformed traceparent", ext: "00-4bf92f3577b34da6a3ce929d0e0e4736-zz-01"},
		{name: "malformed, under a context span", ext: "garbage", ctx: other, parent: other},
		{name: "callback failing", ext: event, parent: event, fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var headers []string
			cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				headers = append(headers, r.Header.Get("traceparent"))
				mu.Unlock()
				if tc.fail {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			defer cb.Close()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			e := newEnv(t, notify.Deps{TracerProvider: tp})
			e.subscribe(t, store.Subscription{ID: "sub-1", CallbackReference: cb.URL + "/notify?token=secret"})
			ev := serviceEvent(t, streamID(), rnis, store.ChangeAdded)
			ev.SetExtension(events.ExtTraceParent, tc.ext)
			ctx := context.Background()
			if tc.ctx != "" {
				ctx, _ = trace.Extract(ctx, tc.ctx, "")
			}
			res := e.n.Handle(ctx, ev)
			if cloudevents.IsACK(res) == tc.fail {
				t.Fatalf("Handle: %v", res)
			}

			var span sdktrace.ReadOnlySpan
			var clients []sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				switch s.Name() {
				case "notify":
					span = s
				case http.MethodPost:
					clients = append(clients, s)
				}
			}
			if span == nil {
				t.Fatal("no notify span")
			}
			if got := traceParentOf(span.Parent()); got != tc.parent {
				t.Errorf("notify span's parent %q, want %q", got, tc.parent)
			}
			var links []string
			for _, l := range span.Links() {
				links = append(links, traceParentOf(l.SpanContext))
			}
			if want := tc.link; strings.Join(links, ",") != want {
				t.Errorf("notify span's links %v, want %q", links, want)
			}
			if tc.parent == "" && span.Parent().IsValid() {
				t.Errorf("malformed traceparent: the notify span has a parent")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(clients) == 0 || len(clients) != len(headers) {
				t.Fatalf("%d client spans, %d callback requests", len(clients), len(headers))
			}
			for i, c := range clients {
				if c.SpanKind() != oteltrace.SpanKindClient || c.Parent().SpanID() != span.SpanContext().SpanID() {
					t.Errorf("client span %d: kind %v, parent %v, want a client span below notify", i, c.SpanKind(), c.Parent())
				}
				if got := traceParentOf(c.SpanContext()); headers[i] != got {
					t.Errorf("callback %d got traceparent %q, want its client span's %q", i, headers[i], got)
				}
				for _, kv := range c.Attributes() {
					if strings.Contains(kv.Value.Emit(), "secret") {
						t.Errorf("client span attribute %s = %s holds the query", kv.Key, kv.Value.Emit())
					}
				}
				if tc.fail != (c.Status().Code == codes.Error) {
					t.Errorf("client span %d status %v", i, c.Status())
				}
			}
			if tc.fail != (span.Status().Code == codes.Error) {
				t.Errorf("notify span status %v", span.Status())
			}
			if tc.fail && len(clients) != 3 {
				t.Errorf("%d attempts traced, want 3", len(clients))
			}
		})
	}
}

func traceParentOf(sc oteltrace.SpanContext) string {
	return trace.TraceParent(oteltrace.ContextWithSpanContext(context.Background(), sc))
}
