package allinone_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
)

// traceparents is a subscriber's callback server that records the
// traceparent and tracestate headers of each ADDED notification, by the
// service's name.
type traceparents struct {
	mu     sync.Mutex
	got    map[string]string // serName → traceparent
	states map[string]string // serName → tracestate
	added  chan struct{}
}

func (c *traceparents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n struct {
		ServiceReferences []struct{ SerName, ChangeType string }
	}
	_ = json.NewDecoder(r.Body).Decode(&n)
	c.mu.Lock()
	for _, ref := range n.ServiceReferences {
		if ref.ChangeType == "ADDED" {
			c.got[ref.SerName] = r.Header.Get("traceparent")
			c.states[ref.SerName] = r.Header.Get("tracestate")
		}
	}
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	select {
	case c.added <- struct{}{}:
	default:
	}
}

// wait returns the traceparent of name's ADDED notification.
func (c *traceparents) wait(t *testing.T, name string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		tp, ok := c.got[name]
		c.mu.Unlock()
		if ok {
			return tp
		}
		select {
		case <-c.added:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no ADDED notification of %s within 10 s", name)
		}
	}
}

// TestRegistrationIsOneTrace: a service registration that a subscriber is
// notified of is one trace, from the HTTP server span of the app's POST
// .../services through the relay's publication, the broker's delivery and
// notify's handling to the client span of the callback POST, each the
// parent of the next; the callback's traceparent header names that client
// span, in that trace. An app's own traceparent header is continued, and
// its tracestate reaches the callback with it (through the store, the
// relay, the broker and notify); a malformed traceparent is ignored (a new
// trace, the registration succeeds) and never stored.
func TestRegistrationIsOneTrace(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	base, _ := platform(t, allinone.Config{RedisURL: r.URL(), CallbackAllow: "127.0.0.0/8", TracerProvider: tp})
	c := client{t, base}
	c.provision("prod", "AKPROD", "secret-key-prod")
	c.provision("cons", "AKCONS", "secret-key-cons")
	prod, cons := c.token("AKPROD", "secret-key-prod"), c.token("AKCONS", "secret-key-cons")

	cb := &traceparents{got: map[string]string{}, states: map[string]string{}, added: make(chan struct{}, 1)}
	srv := httptest.NewServer(cb)
	defer srv.Close()
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/cons/subscriptions", cons,
		`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"`+srv.URL+`/cb"}`)
	c.expect(res, b, http.StatusCreated)

	const (
		appTrace  = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		appState  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
		malformed = "00-0af7651916cd43dd8448eb211c80319c-zzzzzzzzzzzzzzzz-01"
	)
	for _, tc := range []struct{ name, header string }{
		{"trace-new", ""},
		{"trace-app", appTrace},
		{"trace-bad", malformed},
	} {
		hdr := []string{"Content-Type", "application/json"}
		if tc.header != "" {
			hdr = append(hdr, "traceparent", tc.header, "tracestate", appState)
		}
		res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/prod/services", prod, strings.Replace(svcBody, "%s", tc.name, 1), hdr...)
		c.expect(res, b, http.StatusCreated)
	}
	for _, name := range []string{"trace-new", "trace-app", "trace-bad"} {
		t.Run(name, func(t *testing.T) {
			header := cb.wait(t, name)
			ctx, ok := parseTraceParent(header)
			if !ok {
				t.Fatalf("the callback got traceparent %q", header)
			}
			traceID := ctx.TraceID()
			switch name {
			case "trace-app":
				if traceID.String() != appTrace[3:35] {
					t.Errorf("trace %s: the app's trace %s was not continued", traceID, appTrace[3:35])
				}
				cb.mu.Lock()
				state := cb.states[name]
				cb.mu.Unlock()
				if state != appState {
					t.Errorf("the callback got tracestate %q, want the app's %q", state, appState)
				}
			default:
				if traceID.String() == appTrace[3:35] {
					t.Errorf("trace %s: a trace of the app's", traceID)
				}
			}
			// The client span ends once the callback answered: wait for it.
			var chain []tracetest.SpanStub
			total := 0
			deadline := time.Now().Add(5 * time.Second)
			for {
				chain, total = oneTrace(spans.GetSpans(), traceID)
				if len(chain) >= 5 && chain[len(chain)-1].SpanContext.SpanID() == ctx.SpanID() || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			want := []struct {
				name string
				kind oteltrace.SpanKind
			}{
				{"POST /mep/mec_service_mgmt/v1/applications/{appInstanceId}/services", oteltrace.SpanKindServer},
				{"relay publish", oteltrace.SpanKindProducer},
				{"broker deliver", oteltrace.SpanKindProducer},
				{"notify", oteltrace.SpanKindConsumer},
				{"POST", oteltrace.SpanKindClient},
			}
			var names []string
			for _, s := range chain {
				names = append(names, s.Name)
			}
			if len(chain) != len(want) || total != len(want) {
				t.Fatalf("trace %s: %d spans, chain %q, want %d from the server span to the callback's", traceID, total, names, len(want))
			}
			for i, w := range want {
				s := chain[i]
				if s.Name != w.name || s.SpanKind != w.kind {
					t.Errorf("span %d: %q (%v), want %q (%v); trace %q", i, s.Name, s.SpanKind, w.name, w.kind, names)
				}
				if i > 0 && s.StartTime.Before(chain[i-1].StartTime) {
					t.Errorf("span %q started before its parent %q", s.Name, chain[i-1].Name)
				}
			}
			if first := chain[0]; name == "trace-app" && first.Parent.SpanID().String() != appTrace[36:52] {
				t.Errorf("server span's parent %v, want the app's span %s", first.Parent, appTrace[36:52])
			} else if name != "trace-app" && first.Parent.IsValid() {
				t.Errorf("server span has parent %v, want the root of a new trace", first.Parent)
			}
			if last := chain[len(chain)-1]; last.SpanContext.SpanID() != ctx.SpanID() {
				t.Errorf("the callback's traceparent names span %s, not the client span %s", ctx.SpanID(), last.SpanContext.SpanID())
			}
		})
	}

	// The malformed header reached neither the change stream nor any span.
	entries, err := r.Client(t).XRange(context.Background(), "kmep:events", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	traced := 0
	for _, e := range entries {
		if v, ok := e.Values["tp"].(string); ok {
			traced++
			if strings.Contains(v, "zzzz") {
				t.Errorf("change %s stored the malformed traceparent %q", e.ID, v)
			}
		}
	}
	if traced == 0 {
		t.Errorf("no change-stream entry carries a traceparent")
	}
}

// oneTrace returns the chain of spans of trace id from its first span
// whose parent is not in the trace, each the parent of the next (the child
// started last, should there be several), and how many spans the trace
// has.
func oneTrace(all tracetest.SpanStubs, id oteltrace.TraceID) ([]tracetest.SpanStub, int) {
	var of []tracetest.SpanStub
	in := map[oteltrace.SpanID]bool{}
	for _, s := range all {
		if s.SpanContext.TraceID() == id {
			of = append(of, s)
			in[s.SpanContext.SpanID()] = true
		}
	}
	byParent := map[oteltrace.SpanID][]tracetest.SpanStub{}
	var chain []tracetest.SpanStub
	for _, s := range of {
		if s.Parent.IsValid() && in[s.Parent.SpanID()] {
			byParent[s.Parent.SpanID()] = append(byParent[s.Parent.SpanID()], s)
		} else if chain == nil {
			chain = append(chain, s)
		}
	}
	for len(chain) > 0 {
		kids := byParent[chain[len(chain)-1].SpanContext.SpanID()]
		if len(kids) == 0 {
			break
		}
		next := kids[0]
		for _, k := range kids[1:] {
			if k.StartTime.After(next.StartTime) {
				next = k
			}
		}
		chain = append(chain, next)
	}
	return chain, len(of)
}

func parseTraceParent(h string) (oteltrace.SpanContext, bool) {
	parts := strings.Split(h, "-")
	if len(parts) != 4 {
		return oteltrace.SpanContext{}, false
	}
	tid, err1 := oteltrace.TraceIDFromHex(parts[1])
	sid, err2 := oteltrace.SpanIDFromHex(parts[2])
	if err1 != nil || err2 != nil {
		return oteltrace.SpanContext{}, false
	}
	sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{TraceID: tid, SpanID: sid})
	return sc, sc.IsValid()
}
