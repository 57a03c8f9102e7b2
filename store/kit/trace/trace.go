// Package trace carries W3C Trace Context (the traceparent and tracestate
// of https://www.w3.org/TR/trace-context/) across kmep's hops, so that one
// client request is one trace from the function that answers it to the
// callbacks it causes: the HTTP server span of the function
// (server.Trace), the store's change entry (store.Change.TraceParent and
// TraceState), the
// relay's CloudEvent (the CloudEvents distributed-tracing extension,
// events.SetTraceContext), the broker, notify, and the callback POST
// (StartClient).
//
// Every hop uses the W3C propagator (propagation.TraceContext), whatever
// the global one. A malformed traceparent, from a client's header or a
// change entry, is ignored as if it were absent: Extract reports false and
// the hop starts a new trace. Which spans are exported, and where, is the
// binary's concern: server.Main installs the exporter from the
// OpenTelemetry environment (OTEL_EXPORTER_OTLP_ENDPOINT and the rest),
// and without an endpoint the global TracerProvider stays a no-op, whose
// spans carry the incoming span context on unchanged: propagation still
// works, nothing is recorded.
package trace

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// Tracer is tp's tracer of the instrumentation scope name; a nil tp is
// the global TracerProvider (which server.Main installs). Every kmep
// component that takes a TracerProvider gets its tracer here.
func Tracer(tp oteltrace.TracerProvider, name string) oteltrace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(name)
}

// Propagator is the propagator every kmep hop injects and extracts with:
// W3C Trace Context (traceparent and tracestate), no baggage.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Inject returns the traceparent and tracestate of ctx's span context,
// both "" when ctx has no valid one (tracestate is "" when it is empty).
func Inject(ctx context.Context) (traceparent, tracestate string) {
	c := propagation.MapCarrier{}
	Propagator().Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// TraceParent is the traceparent of ctx's span context, "" when it has none.
func TraceParent(ctx context.Context) string {
	tp, _ := Inject(ctx)
	return tp
}

// Extract returns ctx with the span context that traceparent (and
// tracestate) describe as its remote parent, and true. When traceparent is
// empty or malformed it returns ctx unchanged and false (a malformed
// tracestate alone is dropped, as the W3C specification asks).
func Extract(ctx context.Context, traceparent, tracestate string) (context.Context, bool) {
	sc := parse(traceparent, tracestate)
	if !sc.IsValid() {
		return ctx, false
	}
	return oteltrace.ContextWithRemoteSpanContext(ctx, sc), true
}

// Valid reports whether traceparent is a well-formed W3C traceparent with a
// valid (non-zero) trace id and span id.
func Valid(traceparent string) bool { return parse(traceparent, "").IsValid() }

func parse(traceparent, tracestate string) oteltrace.SpanContext {
	if traceparent == "" {
		return oteltrace.SpanContext{}
	}
	c := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		c["tracestate"] = tracestate
	}
	return oteltrace.SpanContextFromContext(Propagator().Extract(context.Background(), c))
}

// StartClient starts a client span of t for req, a child of req's context,
// named after its method, and writes the span's traceparent (and
// tracestate) into the request's headers. It returns a shallow copy of req
// with its own headers and the span in its context (req itself is not
// changed, as an http.RoundTripper requires), and end, which records the
// answer's status (a 4xx or 5xx marks the span as an error) or err and
// ends the span. Neither the URL's query nor its user information is
// recorded.
func StartClient(t oteltrace.Tracer, req *http.Request) (*http.Request, func(resp *http.Response, err error)) {
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", req.Method),
		attribute.String("url.scheme", req.URL.Scheme),
		attribute.String("server.address", req.URL.Hostname()),
	}
	if p := req.URL.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			attrs = append(attrs, attribute.Int("server.port", n))
		}
	}
	ctx, span := t.Start(req.Context(), req.Method, oteltrace.WithSpanKind(oteltrace.SpanKindClient),
		oteltrace.WithAttributes(attrs...))
	out := req.WithContext(ctx)
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	Propagator().Inject(ctx, propagation.HeaderCarrier(out.Header))
	return out, func(resp *http.Response, err error) {
		defer span.End()
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its text would repeat the URL
			}
			span.SetAttributes(attribute.String("error.type", "transport"))
			span.SetStatus(codes.Error, err.Error())
			return
		}
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
			span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(resp.StatusCode))
		}
	}
}

// Transport is an http.RoundTripper that makes each request a client span
// of tp's tracer (StartClient) before base sends it. A nil tp is the
// global TracerProvider, a nil base http.DefaultTransport.
func Transport(tp oteltrace.TracerProvider, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{t: Tracer(tp, scope), base: base}
}

// scope is the instrumentation scope of the spans this package starts.
const scope = "github.com/kmep-io/kmep/store/kit/trace"

type transport struct {
	t    oteltrace.Tracer
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	req, end := StartClient(t.t, req)
	resp, err := t.base.RoundTrip(req)
	end(resp, err)
	return resp, err
}
