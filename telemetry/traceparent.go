package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// EnvTraceParent is the environment variable a Job reads its parent trace
// from (the k8s package sets it from the airlock.dev/traceparent annotation).
const EnvTraceParent = "TRACEPARENT"

const traceparentHeader = "traceparent"

// TraceParent returns the W3C traceparent of the span in ctx, for handing to
// a Job (env TRACEPARENT and the airlock.dev/traceparent annotation), or ""
// when ctx holds no valid span. It works whether tracing is on or not: with
// tracing off, a span context received from upstream is passed on as is.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c.Get(traceparentHeader)
}

// ContextFromTraceParent returns ctx carrying the remote span that tp
// describes, so spans started from it (in code running inside a Job)
// continue the cycle's trace. An empty or malformed tp returns ctx unchanged.
func ContextFromTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{traceparentHeader: tp})
}
