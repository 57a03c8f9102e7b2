// Package deadletter receives the events a Trigger could not deliver (the
// Triggers' deadLetterSink): it logs each one and records it, with the
// error Knative attached (the knativeerrordest, knativeerrorcode and
// knativeerrordata extensions), so an operator can see and replay it. Once
// a kmep event is recorded it is settled (the end-to-end acknowledgment
// the relay waits for): the broker gave up on it and nothing will serve
// it, so the relay must not publish it again.
package deadletter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// The extensions Knative sets on a dead-lettered event
// (knative.dev/eventing/pkg/kncloudevents/attributes).
const (
	ExtErrorDest = "knativeerrordest"
	ExtErrorCode = "knativeerrorcode"
	ExtErrorData = "knativeerrordata"
)

// Recorder keeps dead letters. id is the event's id (the change-stream id
// of kmep's events; one event may be dead-lettered by several Triggers).
type Recorder interface {
	RecordDeadLetter(ctx context.Context, id string, payload []byte) error
}

// Settler settles kmep's events (store.Settle): the relay stops waiting for
// them.
type Settler interface {
	Settle(ctx context.Context, ids ...string) error
}

// Deps are the Handler's dependencies.
type Deps struct {
	// Recorder keeps each dead letter. Zero value: dead letters are only
	// logged.
	Recorder Recorder
	// Settler settles each dead-lettered kmep event (source events.Source)
	// once it is recorded. Zero value: nothing is settled, and the relay
	// publishes the event again after its redelivery timeout.
	Settler Settler
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
	// Metrics is the binary's registry: kmep_deadletter_received_total
	// counts dead letters received, kmep_deadletter_recorded_total those
	// recorded. Zero value: nothing is registered.
	Metrics prometheus.Registerer
	// TracerProvider makes the span "deadletter" of each event Handle is
	// given (events.Handle), with where and how its delivery failed
	// (knative.error_dest, knative.error_code). Zero value: the global one.
	TracerProvider oteltrace.TracerProvider
}

// Record is the JSON payload recorded for one dead letter.
type Record struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Source  string `json:"source"`
	Subject string `json:"subject,omitempty"`
	// App and Change are kmep's extensions (kmepapp, kmepchange).
	App    string `json:"app,omitempty"`
	Change string `json:"change,omitempty"`
	// ErrorDest is where delivery failed (knativeerrordest).
	ErrorDest string `json:"errorDest,omitempty"`
	// ErrorCode is the destination's last HTTP status (knativeerrorcode).
	ErrorCode int `json:"errorCode,omitempty"`
	// ErrorData is the destination's answer (knativeerrordata, decoded
	// from base64 when it is base64 of text, else as received).
	ErrorData  string    `json:"errorData,omitempty"`
	ReceivedAt time.Time `json:"receivedAt"`
	// Event is the whole event (structured JSON), for a replay.
	Event json.RawMessage `json:"event"`
}

// Handler handles dead-lettered events.
type Handler struct {
	rec     Recorder
	settler Settler
	log     *slog.Logger
	now     func() time.Time
	tracer  oteltrace.Tracer

	received, recorded prometheus.Counter
}

// New returns a Handler.
func New(deps Deps) *Handler {
	f := metrics.With(deps.Metrics)
	h := &Handler{rec: deps.Recorder, settler: deps.Settler, log: deps.Log, now: deps.Now,
		received: f.Counter("kmep_deadletter_received_total", "Dead letters received (events the broker gave up delivering)."),
		recorded: f.Counter("kmep_deadletter_recorded_total", "Dead letters recorded for inspection and redelivery.")}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.tracer = trace.Tracer(deps.TracerProvider, "github.com/kmep-io/kmep/triggers/deadletter")
	return h
}

// Handle logs and records one dead letter, then settles it when it is one
// of kmep's events. A failure to record or settle it answers 503, so the
// broker delivers it again (it may then be recorded twice, never lost).
// It does so in a span "deadletter", a child of the event's trace context
// (events.Handle), whose status is the result's.
func (h *Handler) Handle(ctx context.Context, e cloudevents.Event) protocol.Result {
	return events.Handle(ctx, h.tracer, "deadletter", e, h.handle)
}

func (h *Handler) handle(ctx context.Context, e cloudevents.Event) protocol.Result {
	h.received.Inc()
	r, err := NewRecord(e, h.now())
	if err != nil {
		return cehttp.NewResult(http.StatusBadRequest, "dead letter %s: %w", e.ID(), err)
	}
	oteltrace.SpanFromContext(ctx).SetAttributes(attribute.String("knative.error_dest", r.ErrorDest),
		attribute.Int("knative.error_code", r.ErrorCode))
	h.log.Warn("dead letter", "id", r.ID, "type", r.Type, "subject", r.Subject, "app", r.App,
		"error_dest", r.ErrorDest, "error_code", r.ErrorCode, "error_data", r.ErrorData)
	if h.rec != nil {
		payload, err := json.Marshal(r)
		if err != nil {
			return cehttp.NewResult(http.StatusInternalServerError, "dead letter %s: %w", r.ID, err)
		}
		if err := h.rec.RecordDeadLetter(ctx, r.ID, payload); err != nil {
			h.log.Error("record dead letter", "id", r.ID, "err", err)
			return cehttp.NewResult(http.StatusServiceUnavailable, "record dead letter %s: unavailable", r.ID)
		}
		h.recorded.Inc()
	}
	if h.settler != nil && e.Source() == events.Source {
		if err := h.settler.Settle(ctx, r.ID); err != nil {
			h.log.Error("settle dead letter", "id", r.ID, "err", err)
			return cehttp.NewResult(http.StatusServiceUnavailable, "settle dead letter %s: unavailable", r.ID)
		}
	}
	return nil
}

// NewRecord is the record of dead letter e received at now.
func NewRecord(e cloudevents.Event, now time.Time) (Record, error) {
	ext := func(k string) string {
		s, _ := types.ToString(e.Extensions()[k])
		return s
	}
	r := Record{ID: e.ID(), Type: e.Type(), Source: e.Source(), Subject: e.Subject(),
		App: ext(events.ExtApp), Change: ext(events.ExtChange), ErrorDest: ext(ExtErrorDest),
		ErrorData: ext(ExtErrorData), ReceivedAt: now.UTC()}
	if v, ok := e.Extensions()[ExtErrorCode]; ok {
		if code, err := types.ToInteger(v); err == nil {
			r.ErrorCode = int(code)
		}
	}
	if b, err := base64.StdEncoding.DecodeString(r.ErrorData); err == nil && utf8.Valid(b) {
		r.ErrorData = string(b)
	}
	ev, err := json.Marshal(e)
	if err != nil {
		return Record{}, fmt.Errorf("encode event: %w", err)
	}
	r.Event = ev
	return r, nil
}
