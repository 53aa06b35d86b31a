package starter_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/mocks"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/starter"
)

const agentTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestContextWithTraceparent(t *testing.T) {
	ctx, err := starter.ContextWithTraceparent(t.Context(), agentTP)
	require.NoError(t, err)
	sc := trace.SpanContextFromContext(ctx)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sc.TraceID().String())
	assert.Equal(t, "00f067aa0ba902b7", sc.SpanID().String())
	assert.True(t, sc.IsRemote() && sc.IsSampled())

	same, err := starter.ContextWithTraceparent(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, ctx, same, "no header, no change")

	for name, bad := range map[string]string{
		"not a traceparent": "hello",
		"zero trace id":     "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"zero span id":      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"version ff":        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"short trace id":    "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
		"upper case hex":    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
	} {
		got, err := starter.ContextWithTraceparent(t.Context(), bad)
		assert.ErrorIs(t, err, starter.ErrBadTraceparent, name)
		assert.False(t, trace.SpanContextFromContext(got).IsValid(), "%s: ctx unchanged", name)
	}
	_, err = starter.ContextWithTraceparent(t.Context(), strings.Repeat("x", 10_000))
	assert.Less(t, len(err.Error()), 200, "a huge header is not echoed whole")
}

func TestStartJoinsTheAgentsTraceWithThoughtEvents(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	tc := &mocks.Client{}
	var startCtx context.Context
	wr := &mocks.WorkflowRun{}
	wr.On("GetRunID").Return("r1")
	tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, contract.CycleWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) { startCtx = args.Get(0).(context.Context) }).
		Return(wr, nil)

	req := request()
	req.Signature = &contract.RequestSignature{Signature: "vault:v1:eA=="}
	req.Thoughts = []contract.Thought{
		{Step: 1, Content: "checkout p99 is 900ms", Confidence: 0.8},
		{Step: 2, Content: "read its pods before touching anything", Confidence: 0.65},
	}
	ctx, err := starter.ContextWithTraceparent(t.Context(), agentTP)
	require.NoError(t, err)
	_, err = starter.New(tc, starter.WithTracerProvider(tp)).Start(ctx, req)
	require.NoError(t, err)

	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "execute_tool cluster-read", s.Name)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String(), "the agent's trace")
	assert.Equal(t, "00f067aa0ba902b7", s.Parent.SpanID().String(), "a child of the agent's span")
	assert.Equal(t, s.SpanContext, trace.SpanContextFromContext(startCtx), "the workflow is started from the start span")
	attrs := map[string]string{}
	for _, kv := range s.Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	assert.Equal(t, map[string]string{
		"gen_ai.operation.name": "execute_tool",
		"gen_ai.agent.id":       "sample",
		"gen_ai.tool.name":      "cluster-read",
		"airlock.agent":         "sample",
		"airlock.cycle":         "cycle/sample/c1",
		"airlock.cycle.id":      "c1",
		"airlock.action.types":  `["cluster-read"]`,
	}, attrs, "types, never parameters")

	require.Len(t, s.Events, 2, "one event per thought")
	for i, e := range s.Events {
		assert.Equal(t, starter.ThoughtEvent, e.Name)
		ev := map[string]string{}
		for _, kv := range e.Attributes {
			ev[string(kv.Key)] = kv.Value.Emit()
		}
		assert.Equal(t, "sample", ev["gen_ai.agent.id"])
		assert.Equal(t, []string{"1", "2"}[i], ev["airlock.thought.step"])
		assert.Equal(t, []string{"0.8", "0.65"}[i], ev["airlock.thought.confidence"])
		assert.JSONEq(t, `[{"role":"assistant","parts":[{"type":"reasoning","content":"`+req.Thoughts[i].Content+`"}]}]`, ev["gen_ai.output.messages"])
	}
	for _, kv := range append(s.Attributes, s.Events[0].Attributes...) {
		assert.NotContains(t, kv.Value.Emit(), "checkout\"", "the action's parameters stay out of the trace")
		assert.NotContains(t, kv.Value.Emit(), "vault:v1", "the signature stays out of the trace")
	}
}

func TestStartSpanRecordsARefusedRequest(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	req := request()
	req.Actions = nil
	_, err := starter.New(&mocks.Client{}, starter.WithTracerProvider(tp)).Start(t.Context(), req)
	require.Error(t, err)
	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	assert.Equal(t, codes.Error, spans[0].Status.Code)
	assert.Contains(t, spans[0].Status.Description, "at least one action is required")
	assert.Equal(t, "execute_tool", spans[0].Name)
}
