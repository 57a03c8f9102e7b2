package events_test

import (
	"context"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
)

// TestLaneExtension: the event of a bulk change carries kmeplane=bulk, that
// of any other change no kmeplane at all (so the events of live changes are
// as they were), and Bulk tells them apart.
func TestLaneExtension(t *testing.T) {
	for _, tc := range []struct {
		name string
		bulk bool
	}{{"live", false}, {"bulk", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := store.Change{StreamID: "1-0", Kind: store.KindService, Type: store.ChangeStateChanged, AppInstanceID: "app",
				Service: store.ServiceRecord{ID: "svc", AppInstanceID: "app", Name: "rni", State: store.StateSuspended, Rev: 2},
				Bulk:    tc.bulk}
			e, ok, err := events.FromChange(c)
			if err != nil || !ok {
				t.Fatalf("FromChange: %v %v", ok, err)
			}
			v, has := e.Extensions()[events.ExtLane]
			if has != tc.bulk || (tc.bulk && v != events.LaneBulk) {
				t.Errorf("extension %s = %v (present %v), want present %v", events.ExtLane, v, has, tc.bulk)
			}
			if events.Bulk(e) != tc.bulk {
				t.Errorf("Bulk = %v, want %v", events.Bulk(e), tc.bulk)
			}
		})
	}
}

// TestSubjectAgreesWithFromChange: Subject says a change is published, and
// with which subject, exactly when FromChange does.
func TestSubjectAgreesWithFromChange(t *testing.T) {
	svc := store.ServiceRecord{ID: "svc", AppInstanceID: "app", Name: "rni", State: store.StateActive, Rev: 1}
	for _, c := range []store.Change{
		{Kind: store.KindService, Type: store.ChangeAdded, AppInstanceID: "app", Service: svc},
		{Kind: store.KindApp, Type: store.ChangeTerminating, AppInstanceID: "app", Data: []byte(`{"maxGracefulTimeout":3}`)},
		{Kind: store.KindApp, Type: store.ChangeTerminated, AppInstanceID: "app"},
		{Kind: store.KindInstance, Type: store.ChangeInstantiate, AppInstanceID: "app"},
		{Kind: store.KindInstance, Type: store.ChangeTerminate, AppInstanceID: "app", Data: []byte(`{"gracefulTimeout":2}`)},
		{Kind: store.KindSubscription, Type: store.ChangeCreated, AppInstanceID: "app", ID: "sub"},
		{Kind: store.KindRegistration, Type: store.ChangeUpdated, AppInstanceID: "app", ID: "app"},
	} {
		t.Run(c.Kind+"/"+c.Type, func(t *testing.T) {
			c.StreamID = "1-0"
			subject, published := events.Subject(c)
			e, ok, err := events.FromChange(c)
			if err != nil {
				t.Fatal(err)
			}
			if published != ok || (ok && e.Subject() != subject) {
				t.Errorf("Subject = %q, %v; FromChange: subject %q, ok %v", subject, published, e.Subject(), ok)
			}
		})
	}
}

// TestTraceParentExtension: FromChange carries a well-formed traceparent of
// the change into the event's traceparent extension and leaves a malformed
// or missing one out, and its tracestate beside it when that is well
// formed too; TraceContext continues from them, SetTraceContext replaces
// them with a span's (and removes them for a context without one).
func TestTraceParentExtension(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	for _, tc := range []struct {
		name, tp string
		want     bool
		// ts is the change's tracestate; wantTS, whether the event has it.
		ts     string
		wantTS bool
	}{
		{name: "with its tracestate", tp: good, want: true, ts: state, wantTS: true},
		{name: "a malformed tracestate", tp: good, want: true, ts: "congo t61rcWkgMzE"},
		{name: "a tracestate without traceparent", tp: "", want: false, ts: state},
		{name: "well formed", tp: good, want: true},
		{name: "none", tp: "", want: false},
		{name: "not hex", tp: "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", want: false},
		{name: "zero trace id", tp: "00-00000000000000000000000000000000-00f067aa0ba902b7-01", want: false},
		{name: "version ff", tp: "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", want: false},
		{name: "upper case", tp: "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", want: false},
		{name: "truncated", tp: good[:40], want: false},
		{name: "trailing data in version 00", tp: good + "-00", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := store.Change{StreamID: "1-0", Kind: store.KindService, Type: store.ChangeAdded, AppInstanceID: "app",
				Service:     store.ServiceRecord{ID: "svc", AppInstanceID: "app", Name: "rni", State: store.StateActive, Rev: 1},
				TraceParent: tc.tp, TraceState: tc.ts}
			e, ok, err := events.FromChange(c)
			if err != nil || !ok {
				t.Fatalf("FromChange: %v %v", ok, err)
			}
			v, has := e.Extensions()[events.ExtTraceParent]
			if has != tc.want || (tc.want && v != tc.tp) {
				t.Fatalf("traceparent extension %v (present %v), want present %v", v, has, tc.want)
			}
			ctx, ok := events.TraceContext(context.Background(), e)
			sc := oteltrace.SpanContextFromContext(ctx)
			if ok != tc.want || sc.IsValid() != tc.want || (tc.want && (sc.TraceID().String() != good[3:35] || !sc.IsRemote())) {
				t.Errorf("TraceContext: ok %v, span context %v", ok, sc)
			}
			ts, hasTS := e.Extensions()[events.ExtTraceState]
			if hasTS != tc.wantTS || (tc.wantTS && (ts != state || sc.TraceState().String() != state)) {
				t.Errorf("tracestate extension %v (present %v), context's %q; want present %v", ts, hasTS, sc.TraceState(), tc.wantTS)
			}
		})
	}

	e := cloudevents.NewEvent()
	e.SetExtension(events.ExtTraceParent, good)
	e.SetExtension(events.ExtTraceState, "k=v")
	sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{TraceID: [16]byte{1}, SpanID: [8]byte{2}, TraceFlags: oteltrace.FlagsSampled})
	events.SetTraceContext(oteltrace.ContextWithSpanContext(context.Background(), sc), &e)
	if got := e.Extensions()[events.ExtTraceParent]; got != "00-01000000000000000000000000000000-0200000000000000-01" {
		t.Errorf("SetTraceContext: traceparent %v", got)
	}
	if _, has := e.Extensions()[events.ExtTraceState]; has {
		t.Errorf("SetTraceContext kept the old tracestate")
	}
	events.SetTraceContext(context.Background(), &e)
	if len(e.Extensions()) != 0 {
		t.Errorf("SetTraceContext without a span: extensions %v", e.Extensions())
	}
}
