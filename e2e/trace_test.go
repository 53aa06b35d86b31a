package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

// The agent's LLM spans and the cycle are one trace: the agent hands its
// W3C traceparent to the starter, and everything the cycle does, down to
// the Job, descends from the agent's span.
func TestCycleJoinsTheAgentsTraceFromItsTraceparent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env.spans.Reset()
	const (
		agentTrace = "5a1e7ace0f1a9e47b2a3c4d5e6f70812"
		agentSpan  = "a9e47b2a3c4d5e6f"
	)
	ctx, err := starter.ContextWithTraceparent(ctx, "00-"+agentTrace+"-"+agentSpan+"-01")
	require.NoError(t, err)
	st := starter.New(env.tc, starter.WithCatalog(env.catalog), starter.WithSigner(newTestSigner(env.stack)), starter.WithTracerProvider(env.tel.TracerProvider))
	res, err := st.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t),
		Thoughts: []contract.Thought{
			{Step: 1, Content: "the user asked for a greeting", Confidence: 0.9},
			{Step: 2, Content: "echo is read-only, so it runs at once", Confidence: 0.75},
		},
		Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "traced from the agent"}}}})
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)

	byName := map[string]tracetest.SpanStub{}
	for _, s := range env.spans.GetSpans() {
		if s.SpanContext.TraceID().String() == agentTrace {
			byName[s.Name] = s
		}
	}
	start, ok := byName["execute_tool echo"]
	require.True(t, ok, "the start span is in the agent's trace; have %v", keysOf(byName))
	assert.Equal(t, agentSpan, start.Parent.SpanID().String(), "a child of the agent's span")
	assert.Equal(t, start.SpanContext.SpanID(), byName["StartWorkflow:AgentCycle"].Parent.SpanID(), "the workflow start descends from it")
	for _, want := range []string{"RunWorkflow:AgentCycle", "RunActivity:StageAction", "RunActivity:RunJob", "RunActivity:ReleaseAction"} {
		_, ok := byName[want]
		assert.True(t, ok, "%s is in the agent's trace; have %v", want, keysOf(byName))
	}

	var steps []string
	for _, e := range start.Events {
		if e.Name != starter.ThoughtEvent {
			continue
		}
		for _, kv := range e.Attributes {
			switch kv.Key {
			case "airlock.thought.step":
				steps = append(steps, kv.Value.Emit())
			case "gen_ai.agent.id":
				assert.Equal(t, "e2e", kv.Value.AsString())
			}
		}
	}
	assert.Equal(t, []string{"1", "2"}, steps, "each thought is an event on the start span")

	job, err := env.kube.BatchV1().Jobs("airlock-e2e").Get(ctx, res.Actions[0].Job.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Contains(t, job.Spec.Template.Annotations[k8s.AnnotationTraceparent], "00-"+agentTrace+"-", "the Job continues the agent's trace")

	// A malformed header is refused with a clear error and the cycle is
	// still started (the caller warns); its trace is then its own.
	bad, err := starter.ContextWithTraceparent(context.Background(), "00-not-a-trace-01")
	assert.ErrorIs(t, err, starter.ErrBadTraceparent)
	assert.Equal(t, context.Background(), bad)
}

// The CLI joins the agent's trace too: `airlock cycle start --traceparent`
// (or TRACEPARENT) gives its Temporal client the tracing interceptor, so the
// worker's spans land in the agent's trace; a malformed header is a warning.
func TestCLICycleStartJoinsTheAgentsTrace(t *testing.T) {
	env.spans.Reset()
	const agentTrace = "0c1a9e47b2a3c4d5e6f708125a1e7ace"
	write := func(cycle string) string {
		b, err := json.Marshal(contract.CycleRequest{AgentID: "e2e", CycleID: cycle,
			Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "from the cli"}}}})
		require.NoError(t, err)
		f := filepath.Join(t.TempDir(), "req.json")
		require.NoError(t, os.WriteFile(f, b, 0o600))
		return f
	}
	out, err := cli(t, "cycle", "start", "-f", write(cycleID(t)), "--wait", "--traceparent", "00-"+agentTrace+"-b2a3c4d5e6f70812-01")
	require.NoError(t, err, out)
	require.Eventually(t, func() bool {
		for _, s := range env.spans.GetSpans() {
			if s.Name == "RunWorkflow:AgentCycle" && s.SpanContext.TraceID().String() == agentTrace {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "the worker ran the CLI's cycle in the agent's trace")

	out, err = cli(t, "cycle", "start", "-f", write(cycleID(t)+"-bad"), "--wait", "--traceparent", "00-nonsense")
	require.NoError(t, err, "a bad trace header never fails a cycle: %s", out)
	assert.Contains(t, out, "warning: invalid traceparent")
	assert.Contains(t, out, "succeeded")
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
