package main

import (
	"context"
	"fmt"
	"io"

	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
)

// joinTrace makes a cycle start part of the agent's trace (its W3C
// traceparent, from --traceparent or TRACEPARENT): the Temporal client gets
// the tracing interceptor (cf.tel) and the starter a tracer, exporting to
// OTEL_EXPORTER_OTLP_* when set. A malformed header is reported on stderr
// and the cycle starts anyway, in a trace of its own: tracing never fails
// a cycle. The returned func flushes the spans.
func joinTrace(ctx context.Context, tp string, cf *clientFlags, stderr io.Writer) (context.Context, []starter.Option, func(), error) {
	if tp == "" {
		return ctx, nil, func() {}, nil
	}
	joined, err := starter.ContextWithTraceparent(ctx, tp)
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v; the cycle starts in a trace of its own\n", err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-cli", LogWriter: io.Discard, DisablePrometheus: true})
	if err != nil {
		return ctx, nil, nil, err
	}
	cf.tel = tel
	return joined, []starter.Option{starter.WithTracerProvider(tel.TracerProvider)},
		func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }, nil
}
