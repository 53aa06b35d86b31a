package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/airlockhq/airlock/mcpserver"
)

// workerSpans are the worker's spans of a cycle, by name.
var workerSpans = []string{"RunWorkflow:AgentCycle", "RunActivity:StageAction", "RunActivity:RunJob", "RunActivity:ReleaseAction"}

// agentTraceparent is a fresh W3C traceparent, as an agent's LLM span
// would hand on: the trace id is unique to the test.
func agentTraceparent(t *testing.T) (tp, traceID string) {
	t.Helper()
	traceID, spanID := randomHex(t), randomHex(t)[:16]
	return "00-" + traceID + "-" + spanID + "-01", traceID
}

// requireCycleInTrace waits until the worker's spans of cycle workflowID
// are in trace traceID, and returns the trace's spans by name.
func requireCycleInTrace(t *testing.T, traceID, workflowID string) map[string]tracetest.SpanStub {
	t.Helper()
	var byName map[string]tracetest.SpanStub
	require.Eventually(t, func() bool {
		byName = map[string]tracetest.SpanStub{}
		for _, s := range env.spans.GetSpans() {
			if s.SpanContext.TraceID().String() == traceID {
				byName[s.Name] = s
			}
		}
		for _, name := range workerSpans {
			if _, ok := byName[name]; !ok {
				return false
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "the worker ran cycle %s in the agent's trace %s", workflowID, traceID)
	run := byName["RunWorkflow:AgentCycle"]
	assert.True(t, slices.ContainsFunc(run.Attributes, func(kv attribute.KeyValue) bool {
		return string(kv.Key) == "temporalWorkflowID" && kv.Value.AsString() == workflowID
	}), "the trace's workflow is cycle %s: %v", workflowID, run.Attributes)
	return byName
}

// An agent framework that traces its LLM calls hands its span to each MCP
// tool call in _meta.traceparent (as OpenTelemetry's MCP instrumentation
// does): the cycle the call proposes runs in the agent's trace, through the
// Temporal header, though `airlock mcp` exports no spans of its own.
// TRACEPARENT in the server's environment is the trace of calls that send
// none; a malformed header is a warning and the call proceeds.
func TestMCPToolCallJoinsTheAgentsTrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	token := agentLogin(ctx, t, "e2e-adv")
	serverTP, serverTrace := agentTraceparent(t)
	cs, _, stderr := mcpSession(ctx, t, []string{"AIRLOCK_AGENT_VAULT_TOKEN=" + token, "TRACEPARENT=" + serverTP}, token)
	echo := func(t *testing.T, meta mcp.Meta) mcpserver.Result {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Meta: meta, Name: "echo", Arguments: map[string]any{
			"text": "traced", "rationale": "the model decided to look",
			"thoughts": []any{map[string]any{"content": "the LLM span is mine", "confidence": 0.9}},
		}})
		require.NoError(t, err)
		text, r := callResult(t, res)
		require.False(t, res.IsError, text)
		require.Equal(t, "succeeded", r.Status, text)
		return r
	}

	t.Run("the call's _meta.traceparent wins", func(t *testing.T) {
		callTP, callTrace := agentTraceparent(t)
		r := echo(t, mcp.Meta{mcpserver.MetaTraceparent: callTP, mcpserver.MetaTracestate: "agent=e2e"})
		spans := requireCycleInTrace(t, callTrace, r.WorkflowID)
		assert.Equal(t, "agent=e2e", spans["RunWorkflow:AgentCycle"].SpanContext.TraceState().String(), "tracestate goes with it")
	})
	t.Run("TRACEPARENT when the call sends none", func(t *testing.T) {
		r := echo(t, nil)
		requireCycleInTrace(t, serverTrace, r.WorkflowID)
	})
	t.Run("a malformed one is a warning and the call proceeds", func(t *testing.T) {
		r := echo(t, mcp.Meta{mcpserver.MetaTraceparent: "00-nonsense-01"})
		assert.Contains(t, stderr.String(), "invalid traceparent")
		requireCycleInTrace(t, serverTrace, r.WorkflowID) // the server's, as the call's is unusable
	})
}
