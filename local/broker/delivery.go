package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
	"knative.dev/eventing/pkg/kncloudevents/attributes"

	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// job is one event on its way to one Trigger's subscriber (or, once that
// failed for good, to its dead-letter sink).
type job struct {
	r       *route
	e       cloudevents.Event
	attempt int  // failed attempts at the current destination
	dead    bool // delivering to the dead-letter sink
	bulk    bool // in the bulk lane
	// parent is the trace context the event came with (its traceparent
	// extension; invalid when it had none): each attempt's span is its
	// child.
	parent oteltrace.SpanContext
}

// outcome is one delivery attempt's result.
type outcome struct {
	code int // HTTP status; 0 when no answer came
	body []byte
	err  error
}

func (o outcome) ok() bool { return o.err == nil && o.code/100 == 2 }

// retryable is kncloudevents.SelectiveRetry: no answer, 5xx, 404, 408,
// 409 and 429 are worth another attempt; other answers are final.
func (o outcome) retryable() bool {
	if o.err != nil || o.code == 0 {
		return true
	}
	switch o.code {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return o.code >= 500
}

func (o outcome) String() string {
	if o.err != nil {
		return o.err.Error()
	}
	return fmt.Sprintf("HTTP %d: %s", o.code, bytes.TrimSpace(o.body))
}

// deliver makes one attempt and schedules what follows: a retry after the
// route's backoff, the dead-letter sink, or nothing.
func (b *Broker) deliver(ctx context.Context, j *job) {
	r := j.r
	target, what := r.subscriber, "subscriber"
	if j.dead {
		target, what = *r.dls, "dead-letter sink"
	}
	o := b.traced(ctx, j, target, what)
	switch {
	case o.ok():
		if j.dead {
			b.deadLettered.Add(1)
		} else {
			b.delivered.Add(1)
		}
		b.release()
		return
	case ctx.Err() != nil:
		return // stopping: Run reports what is left
	case o.retryable() && j.attempt < r.retries:
		wait := r.backoff(j.attempt)
		j.attempt++
		b.retries.Add(1)
		b.log.Debug("delivery failed: retrying", "trigger", r.name, "to", what, "id", j.e.ID(), "attempt", j.attempt, "retry_in", wait, "err", o)
		time.AfterFunc(wait, func() { b.requeue(j) })
		return
	case !j.dead && r.dls != nil:
		b.log.Warn("delivery failed: dead-lettering", "trigger", r.name, "id", j.e.ID(), "type", j.e.Type(), "attempts", j.attempt+1, "err", o)
		j.e = deadLetter(j.e, r.subscriber, o)
		j.dead, j.attempt = true, 0
		b.requeue(j)
		return
	}
	b.dropped.Add(1)
	b.release()
	b.log.Error("delivery failed for good: event dropped", "trigger", r.name, "to", what, "id", j.e.ID(), "type", j.e.Type(), "attempts", j.attempt+1, "err", o)
}

// traced makes one attempt of j to target in a span "broker deliver", a
// child of the trace context the event came with, and sets the event's
// traceparent extension to that span for the receiver.
func (b *Broker) traced(ctx context.Context, j *job, target Target, what string) outcome {
	sctx := ctx
	if j.parent.IsValid() {
		sctx = oteltrace.ContextWithRemoteSpanContext(ctx, j.parent)
	}
	sctx, span := b.tracer.Start(sctx, "broker deliver", oteltrace.WithSpanKind(oteltrace.SpanKindProducer),
		oteltrace.WithAttributes(attribute.String("kmep.trigger", j.r.name), attribute.String("kmep.destination", what),
			attribute.Int("kmep.attempt", j.attempt+1), attribute.String("cloudevents.event_id", j.e.ID())))
	defer span.End()
	events.SetTraceContext(sctx, &j.e)
	o := b.send(sctx, target, j.e, j.r)
	if o.code != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", o.code))
	}
	if !o.ok() {
		span.SetStatus(codes.Error, o.String())
	}
	return o
}

// requeue puts a job back on its lane's queue (its place is still
// reserved).
func (b *Broker) requeue(j *job) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return
	}
	b.lane(j) <- j
}

// deadLetter is e with Knative's error extensions: where it failed, the
// status, and the answer's body in base64 (at most 1024 characters).
func deadLetter(e cloudevents.Event, dest Target, o outcome) cloudevents.Event {
	e = e.Clone()
	e.SetExtension(attributes.KnativeErrorDestExtensionKey, dest.name())
	if o.code != 0 {
		e.SetExtension(attributes.KnativeErrorCodeExtensionKey, o.code)
	}
	data := o.body
	if o.err != nil {
		data = []byte(o.err.Error())
	}
	enc := base64.StdEncoding.EncodeToString(data)
	if len(enc) > attributes.KnativeErrorDataExtensionMaxLength {
		enc = enc[:attributes.KnativeErrorDataExtensionMaxLength]
	}
	if enc != "" {
		e.SetExtension(attributes.KnativeErrorDataExtensionKey, enc)
	}
	return e
}

const inProcessURL = "http://in-process/"

func (t Target) name() string {
	if t.URL == "" {
		return inProcessURL
	}
	return t.URL
}

// maxAnswerBytes is how much of a subscriber's answer is kept.
const maxAnswerBytes = 4 << 10

// send makes one attempt: in process through the Receiver or the Handler,
// else over HTTP.
func (b *Broker) send(ctx context.Context, t Target, e cloudevents.Event, r *route) (o outcome) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if t.Receive != nil {
		return receive(ctx, t.Receive, e)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.name(), nil)
	if err != nil {
		return outcome{err: err}
	}
	if req.URL.Path == "" {
		req.URL.Path = "/"
	}
	wctx := binding.WithForceBinary(ctx)
	if r.structured {
		wctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteRequest(wctx, binding.ToMessage(&e), req); err != nil {
		return outcome{err: fmt.Errorf("encode event: %w", err)}
	}
	trace.Propagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	if t.Handler == nil {
		resp, err := b.opts.Client.Do(req)
		if err != nil {
			return outcome{err: err}
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return outcome{code: resp.StatusCode, body: body}
	}
	rec := &recorder{header: http.Header{}}
	defer func() {
		if p := recover(); p != nil {
			o = outcome{err: fmt.Errorf("handler panicked: %v", p)}
		}
	}()
	t.Handler.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return outcome{code: rec.code, body: rec.body.Bytes()}
}

// receive hands e to fn and reads its result as the status the
// CloudEvents HTTP receiver would answer (cloudevents' protocol/http).
func receive(ctx context.Context, fn Receiver, e cloudevents.Event) (o outcome) {
	defer func() {
		if p := recover(); p != nil {
			o = outcome{err: fmt.Errorf("receiver panicked: %v", p)}
		}
	}()
	res := fn(ctx, e)
	var hr *cehttp.Result
	var ve event.ValidationError
	switch {
	case res == nil:
		return outcome{code: http.StatusOK}
	case protocol.ResultAs(res, &hr):
		o = outcome{code: http.StatusOK, body: []byte(fmt.Sprintf(hr.Format, hr.Args...))}
		if hr.StatusCode > 100 && hr.StatusCode < 600 {
			o.code = hr.StatusCode
		}
		return o
	case protocol.IsACK(res):
		return outcome{code: http.StatusOK}
	case errors.As(res, &ve):
		return outcome{code: http.StatusBadRequest, body: []byte(ve.Error())}
	}
	return outcome{code: http.StatusInternalServerError, body: []byte(res.Error())}
}

// recorder is the ResponseWriter of an in-process delivery.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if room := maxAnswerBytes - r.body.Len(); room > 0 {
		r.body.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
