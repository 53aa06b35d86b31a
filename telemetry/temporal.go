package telemetry

import (
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// temporalScope names the tracer and meter the Temporal SDK reports through.
const temporalScope = "go.temporal.io/sdk"

// TemporalInterceptors returns the client interceptors that trace workflow
// starts, signals, updates, queries, workflows and activities with our
// tracer. Set them as client.Options.Interceptors: the SDK also applies a
// client interceptor that is a worker interceptor (this one is) to every
// worker built from that client, so worker.Options need nothing more. The
// activity's context then holds its span, and TraceParent(ctx) works there.
func (t *Telemetry) TemporalInterceptors() ([]interceptor.ClientInterceptor, error) {
	i, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{
		Tracer:            t.TracerProvider.Tracer(temporalScope),
		TextMapPropagator: t.propagator,
	})
	if err != nil {
		return nil, fmt.Errorf("temporal tracing interceptor: %w", err)
	}
	return []interceptor.ClientInterceptor{i}, nil
}

// TemporalMetricsHandler returns the handler for client.Options.MetricsHandler,
// so the SDK's own metrics (temporal_*) are served by PrometheusHandler next
// to Airlock's. Counters are monotonic (Prometheus counters, not gauges); an
// instrument the meter refuses is logged, not a panic (the contrib default).
func (t *Telemetry) TemporalMetricsHandler() client.MetricsHandler {
	return temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter:                t.MeterProvider.Meter(temporalScope),
		UseMonotonicCounters: true,
		OnError: func(err error) {
			t.Logger.Warn("temporal metric", slog.Any("error", err))
		},
	})
}
