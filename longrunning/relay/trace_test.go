package relay_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// garbledTrace hands the relay the change of service "svc-garbled" with a
// malformed traceparent, as a corrupt or foreign entry would have.
type garbledTrace struct{ *store.Store }

func (g garbledTrace) ReadGroup(ctx context.Context, group, consumer string, count int64, block time.Duration, pending bool) ([]store.Change, error) {
	chs, err := g.Store.ReadGroup(ctx, group, consumer, count, block, pending)
	for i := range chs {
		if chs[i].Service.ID == "svc-garbled" {
			chs[i].TraceParent = "00-not-a-trace-01"
		}
	}
	return chs, err
}

// TestPublishContinuesTheChangesTrace: the event of a change a traced
// request made is published in a span "relay publish", a child of the
// request's span, and carries that span in its traceparent extension; the
// POST to the sink is a client span below it, with a traceparent header.
// A change without trace context, or with a malformed one, is published
// in a trace of its own.
func TestPublishContinuesTheChangesTrace(t *testing.T) {
	st := newStore(t)
	type got struct{ header, ext string }
	var mu sync.Mutex
	seen := map[string]got{} // by subject
	sinkSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ext, _ := e.Extensions()["traceparent"].(string)
		mu.Lock()
		seen[e.Subject()] = got{header: r.Header.Get("traceparent"), ext: ext}
		mu.Unlock()
		_ = st.Settle(r.Context(), e.ID())
		w.WriteHeader(http.StatusAccepted)
	}))
	defer sinkSrv.Close()

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	a, err := relay.New(fastConfig(sinkSrv.URL), relay.Deps{Store: garbledTrace{st}, Log: quiet(), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 10*time.Second, "relay leads", func() bool { return a.Stats().Leader })

	const request = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	reqCtx, _ := trace.Extract(context.Background(), request, "")
	for _, c := range []struct {
		ctx context.Context
		id  string
	}{{reqCtx, "svc-traced"}, {context.Background(), "svc-untraced"}, {reqCtx, "svc-garbled"}} {
		r := store.ServiceRecord{ID: c.id, AppInstanceID: "app", Name: c.id, State: store.StateActive}
		if _, _, err := st.CreateService(c.ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "three events published", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 3 })

	publish := map[string]sdktrace.ReadOnlySpan{} // by the event's subject
	clients := map[oteltrace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == "relay publish":
			for _, kv := range s.Attributes() {
				if kv.Key == "cloudevents.event_subject" {
					publish[kv.Value.AsString()] = s
				}
			}
		case s.SpanKind() == oteltrace.SpanKindClient:
			clients[s.Parent().SpanID()] = s
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for subject, s := range publish {
		g := seen[subject]
		if s.SpanKind() != oteltrace.SpanKindProducer {
			t.Errorf("%s: relay publish is a %v span", subject, s.SpanKind())
		}
		if want := trace.TraceParent(oteltrace.ContextWithSpanContext(context.Background(), s.SpanContext())); g.ext != want {
			t.Errorf("%s: the event's traceparent is %q, want the relay span's %q", subject, g.ext, want)
		}
		cl, ok := clients[s.SpanContext().SpanID()]
		if !ok {
			t.Errorf("%s: no client span below relay publish", subject)
			continue
		}
		if want := trace.TraceParent(oteltrace.ContextWithSpanContext(context.Background(), cl.SpanContext())); g.header != want {
			t.Errorf("%s: traceparent header %q, want the client span's %q", subject, g.header, want)
		}
	}
	if len(publish) != 3 {
		t.Fatalf("%d relay publish spans, want 3: %v", len(publish), publish)
	}
	traced := publish["svc-traced"]
	if traced.Parent().TraceID().String() != request[3:35] || traced.Parent().SpanID().String() != request[36:52] {
		t.Errorf("traced change: relay publish's parent %v, want the request's span %s", traced.Parent(), request)
	}
	for _, subject := range []string{"svc-untraced", "svc-garbled"} {
		s := publish[subject]
		if s.Parent().IsValid() || s.SpanContext().TraceID().String() == request[3:35] {
			t.Errorf("%s: relay publish has parent %v in trace %s, want the root of a new trace", subject, s.Parent(), s.SpanContext().TraceID())
		}
	}
}
