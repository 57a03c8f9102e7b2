package events

import (
	"context"
	"fmt"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// Handle runs fn on e inside a consumer span named name, the span every
// trigger (notify, installer, deadletter) makes of each event it handles,
// and returns fn's result. The span's parent is the span that handed e on,
// named by e's traceparent extension, unless ctx already carries a span
// of that trace (a hop closer: the broker's, or the receiver's HTTP server
// span below the broker's traceparent header), which is then the parent. A
// span of another trace in ctx (a server span that started a trace of its
// own) is linked to. A malformed traceparent is ignored: the parent is
// ctx's span, if any. The span carries the event's id, type and subject,
// and the answer's HTTP status; a refusal or a retry (4xx, 5xx, NACK) marks
// it an error with the result's message.
func Handle(ctx context.Context, tracer oteltrace.Tracer, name string, e cloudevents.Event,
	fn func(context.Context, cloudevents.Event) protocol.Result) protocol.Result {
	opts := []oteltrace.SpanStartOption{oteltrace.WithSpanKind(oteltrace.SpanKindConsumer),
		oteltrace.WithAttributes(attribute.String("cloudevents.event_id", e.ID()), attribute.String("cloudevents.event_type", e.Type()),
			attribute.String("cloudevents.event_subject", e.Subject()))}
	parent := ctx
	if ectx, ok := TraceContext(ctx, e); ok {
		cur := oteltrace.SpanContextFromContext(ctx)
		switch {
		case !cur.IsValid():
			parent = ectx
		case cur.TraceID() != oteltrace.SpanContextFromContext(ectx).TraceID():
			parent = ectx
			opts = append(opts, oteltrace.WithLinks(oteltrace.Link{SpanContext: cur}))
		}
	}
	ctx, span := tracer.Start(parent, name, opts...)
	defer span.End()
	res := fn(ctx, e)
	var hr *cehttp.Result
	if protocol.ResultAs(res, &hr) {
		span.SetAttributes(attribute.Int("http.response.status_code", hr.StatusCode))
		if hr.StatusCode >= 400 {
			span.SetStatus(codes.Error, fmt.Sprintf(hr.Format, hr.Args...))
		}
	} else if !protocol.IsACK(res) {
		span.SetStatus(codes.Error, res.Error())
	}
	return res
}
