package deadletter_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/triggers/deadletter"
)

type fakeRecorder struct {
	mu        sync.Mutex
	ids       []string
	bodys     [][]byte
	err       error
	settled   []string
	settleErr error
}

func (f *fakeRecorder) Settle(_ context.Context, ids ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.settleErr != nil {
		return f.settleErr
	}
	f.settled = append(f.settled, ids...)
	return nil
}

var _ deadletter.Settler = (*fakeRecorder)(nil)

func (f *fakeRecorder) RecordDeadLetter(_ context.Context, id string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.ids = append(f.ids, id)
	f.bodys = append(f.bodys, payload)
	return nil
}

var _ deadletter.Recorder = (*fakeRecorder)(nil)

func serve(t *testing.T, rec *fakeRecorder) http.Handler {
	t.Helper()
	d := deadletter.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	if rec != nil {
		d.Recorder, d.Settler = rec, rec
	}
	h := deadletter.New(d)
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	r, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, h.Handle)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// deadLettered is a kmep event as the broker dead-letters it.
func deadLettered(t *testing.T) cloudevents.Event {
	t.Helper()
	e, ok, err := events.FromChange(store.Change{StreamID: "1767323045000-0", Kind: store.KindService, Type: store.ChangeAdded,
		AppInstanceID: "app1", Service: store.ServiceRecord{ID: "svc1", Name: "rni", State: store.StateActive, Rev: 1}})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	e.SetExtension(deadletter.ExtErrorDest, "http://notify.kmep.svc.cluster.local")
	e.SetExtension(deadletter.ExtErrorCode, 503)
	e.SetExtension(deadletter.ExtErrorData, base64.StdEncoding.EncodeToString([]byte("no callback answered")))
	return e
}

func post(t *testing.T, h http.Handler, e cloudevents.Event) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestRecordsDeadLetters(t *testing.T) {
	rec := &fakeRecorder{}
	w := post(t, serve(t, rec), deadLettered(t))
	if w.Code/100 != 2 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if len(rec.ids) != 1 || rec.ids[0] != "1767323045000-0" {
		t.Fatalf("recorded ids %v", rec.ids)
	}
	if len(rec.settled) != 1 || rec.settled[0] != "1767323045000-0" {
		t.Fatalf("settled ids %v, want the recorded one", rec.settled)
	}
	problemtest.Golden(t, "record", rec.bodys[0])
}

// A dead letter is settled only once it is recorded, and a failure of
// either asks the broker for a redelivery; an event that is not kmep's is
// recorded but never settled.
func TestSettling(t *testing.T) {
	down := errors.New("redis: connection refused")
	foreign := deadLettered(t)
	foreign.SetSource("/elsewhere")
	for _, tc := range []struct {
		name              string
		rec               *fakeRecorder
		e                 cloudevents.Event
		code              int
		recorded, settled int
	}{
		{"recorder fails", &fakeRecorder{err: down}, deadLettered(t), http.StatusServiceUnavailable, 0, 0},
		{"settle fails", &fakeRecorder{settleErr: down}, deadLettered(t), http.StatusServiceUnavailable, 1, 0},
		{"not a kmep event", &fakeRecorder{}, foreign, http.StatusOK, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(t, serve(t, tc.rec), tc.e)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d", w.Code, tc.code)
			}
			if len(tc.rec.ids) != tc.recorded || len(tc.rec.settled) != tc.settled {
				t.Fatalf("recorded %v, settled %v; want %d and %d", tc.rec.ids, tc.rec.settled, tc.recorded, tc.settled)
			}
		})
	}
}

func TestWithoutRecorderOnlyLogs(t *testing.T) {
	if w := post(t, serve(t, nil), deadLettered(t)); w.Code/100 != 2 {
		t.Fatalf("status %d", w.Code)
	}
}

func TestNewRecordKeepsUndecodableErrorData(t *testing.T) {
	e := cloudevents.NewEvent()
	e.SetID("1")
	e.SetType("t")
	e.SetSource("/s")
	e.SetExtension(deadletter.ExtErrorData, "not base64!")
	r, err := deadletter.NewRecord(e, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if r.ErrorData != "not base64!" || r.ErrorCode != 0 || r.ErrorDest != "" {
		t.Fatalf("%+v", r)
	}
}

// Each dead letter is handled in a span "deadletter" below the event's
// traceparent, naming where and how its delivery failed; a failure to
// record it (503) marks the span an error.
func TestDeadLetterSpan(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name  string
		err   error
		fails bool
	}{{"recorded", nil, false}, {"not recorded", errors.New("redis: connection refused"), true}} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			fr := &fakeRecorder{err: tc.err}
			h := deadletter.New(deadletter.Deps{Recorder: fr, Settler: fr, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
			e := deadLettered(t)
			e.SetExtension(events.ExtTraceParent, parent)
			res := h.Handle(context.Background(), e)
			if cloudevents.IsACK(res) == tc.fails {
				t.Fatalf("Handle: %v", res)
			}
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if sp.Name() != "deadletter" || sp.SpanKind() != oteltrace.SpanKindConsumer ||
				sp.Parent().TraceID().String() != parent[3:35] || sp.Parent().SpanID().String() != parent[36:52] {
				t.Fatalf("span %q (%v) below %v, want a consumer span \"deadletter\" below the event's traceparent", sp.Name(), sp.SpanKind(), sp.Parent())
			}
			attrs := map[string]string{}
			for _, kv := range sp.Attributes() {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if attrs["knative.error_dest"] != "http://notify.kmep.svc.cluster.local" || attrs["knative.error_code"] != "503" ||
				attrs["cloudevents.event_id"] != "1767323045000-0" {
				t.Errorf("attributes %v", attrs)
			}
			if got := sp.Status().Code == codes.Error; got != tc.fails {
				t.Errorf("span status %v, want an error: %v", sp.Status(), tc.fails)
			}
		})
	}
}
