package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The OpenTelemetry variables Tracing reads itself (the SDK and the OTLP
// exporter read the others: OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _CERTIFICATE, _INSECURE, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...).
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envExporter       = "OTEL_TRACES_EXPORTER"
	envDisabled       = "OTEL_SDK_DISABLED"
)

// Tracing sets the process's tracing up for the binary component, from the
// OpenTelemetry environment: it installs the W3C Trace Context propagator
// as the global one and, when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT is set, a global TracerProvider that batches
// spans to that OTLP endpoint, over the protocol that
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
// names: "http/protobuf" (the default) or "grpc". The spans' resource is
// service.name component (OTEL_SERVICE_NAME wins) and service.version
// Version(), plus OTEL_RESOURCE_ATTRIBUTES. Without an endpoint, or with
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none, the global
// TracerProvider stays the no-op one: spans cost next to nothing and
// nothing is exported, while trace context still propagates. Export errors
// are logged on log as warnings ("trace export").
//
// Another protocol, or an OTEL_TRACES_EXPORTER other than otlp or none, is
// an error naming the variable. shutdown flushes the spans not yet
// exported and stops the exporter. For main packages only (Main calls it).
func Tracing(ctx context.Context, component string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	none := func(context.Context) error { return nil }
	endpoint := Env(envTracesEndpoint, Env(envEndpoint, ""))
	switch exp := Env(envExporter, "otlp"); {
	case strings.EqualFold(Env(envDisabled, ""), "true"), exp == "none":
		return none, nil
	case exp != "otlp":
		return nil, fmt.Errorf("%s: %q: want otlp or none (traces are exported over OTLP only)", envExporter, exp)
	case endpoint == "":
		return none, nil
	}
	protoVar := envTracesProtocol
	proto := Env(envTracesProtocol, "")
	if proto == "" {
		protoVar, proto = envProtocol, Env(envProtocol, "http/protobuf")
	}
	var exp sdktrace.SpanExporter
	switch proto {
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%s: %q: want http/protobuf or grpc", protoVar, proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter (%s): %w", proto, err)
	}
	res, rerr := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", component),
		attribute.String("service.version", Version())), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if rerr != nil {
		log.Warn("trace resource", "err", rerr) // a partial resource is still used
	}
	if res == nil {
		res = resource.Empty()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("trace export", "err", err) }))
	log.Info("exporting traces over OTLP", "protocol", proto, "endpoint", redactEndpoint(endpoint))
	return func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("flush traces: %w", err)
		}
		return nil
	}, nil
}

// redactEndpoint is the endpoint's scheme, host and path, without user
// information or query (for the log).
func redactEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(not a URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
