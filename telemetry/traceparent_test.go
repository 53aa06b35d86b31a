package telemetry_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/airlockhq/airlock/telemetry"
)

func TestTraceParentRoundTrip(t *testing.T) {
	clearOTelEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tel, _ := setup(t, telemetry.Config{SpanExporter: exp})

	ctx, span := tel.Tracer().Start(t.Context(), "RunActivity:StageAction")
	tp := telemetry.TraceParent(ctx)
	span.End()
	sc := span.SpanContext()
	assert.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", tp)

	// Inside the Job: continue the trace from the env var.
	jobCtx := telemetry.ContextFromTraceParent(t.Context(), tp)
	remote := trace.SpanContextFromContext(jobCtx)
	require.True(t, remote.IsValid())
	assert.True(t, remote.IsRemote())
	assert.Equal(t, sc.TraceID(), remote.TraceID())

	_, jobSpan := tel.Tracer().Start(jobCtx, "job")
	jobSpan.End()
	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	assert.Equal(t, sc.TraceID(), spans[1].SpanContext.TraceID(), "the Job's span is in the cycle's trace")
	assert.Equal(t, sc.SpanID(), spans[1].Parent.SpanID(), "and a child of the activity's span")
}

func TestTraceParentWithoutSpan(t *testing.T) {
	tests := map[string]string{
		"empty":     "",
		"malformed": "not-a-traceparent",
		"zero ids":  "00-00000000000000000000000000000000-0000000000000000-01",
	}
	assert.Empty(t, telemetry.TraceParent(t.Context()))
	for name, tp := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := telemetry.ContextFromTraceParent(t.Context(), tp)
			assert.False(t, trace.SpanContextFromContext(ctx).IsValid())
			assert.Empty(t, telemetry.TraceParent(ctx))
		})
	}
}
