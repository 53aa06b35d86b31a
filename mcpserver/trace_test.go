package mcpserver

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/mocks"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

const (
	callTrace   = "4bf92f3577b34da6a3ce929d0e0e4736"
	callSpan    = "00f067aa0ba902b7"
	serverTrace = "0af7651916cd43dd8448eb211c80319c"
	serverSpan  = "b7ad6b7169203331"
)

// lockedBuffer is a log sink the server's handlers and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// nopSigner signs nothing of value: the unit tests never reach a worker.
type nopSigner struct{}

func (nopSigner) Sign(context.Context, string, []byte) (contract.Signature, error) {
	return contract.Signature{Key: "airlock-agent-bot", KeyVersion: 1, Value: "vault:v1:eA=="}, nil
}

// tracedServer serves agent bot through a real starter.Client whose spans
// go to the returned exporter; Temporal is the SDK's mock client, whose
// cycles succeed at once.
func tracedServer(t *testing.T, serverTP string) (*mcp.ClientSession, *tracetest.InMemoryExporter, *lockedBuffer, *mocks.Client) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	wr := &mocks.WorkflowRun{}
	wr.On("GetRunID").Return("r1")
	wr.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*contract.CycleResult) = contract.CycleResult{Outcome: contract.OutcomeSucceeded, Actions: []contract.ActionResult{
			{Type: "inspect", Outcome: contract.OutcomeSucceeded, Decision: policy.Decision{Mode: policy.ModeRun}}}}
	}).Return(nil)
	tc := &mocks.Client{}
	tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, contract.CycleWorkflowName, mock.Anything).Return(wr, nil)
	cat := loadCatalog(t)
	st := starter.New(tc, starter.WithCatalog(cat), starter.WithSigner(nopSigner{}), starter.WithTracerProvider(tp))
	logs := &lockedBuffer{}
	srv, err := New(Config{AgentID: "bot", Catalog: cat, Cycles: newAgent{st},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Traceparent: serverTP})
	require.NoError(t, err)
	sTr, cTr := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	ss, err := srv.MCP().Connect(ctx, sTr, nil)
	require.NoError(t, err)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil).Connect(ctx, cTr, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
		cancel()
	})
	return cs, exp, logs, tc
}

// newAgent is a starter.Client for an agent that has not run yet (no
// Agent workflow to query).
type newAgent struct{ *starter.Client }

func (newAgent) AgentState(context.Context, string) (contract.AgentState, error) {
	return contract.AgentState{}, starter.ErrNoAgentState
}

func TestACallJoinsTheCallersTrace(t *testing.T) {
	tp := func(trace, span string) string { return "00-" + trace + "-" + span + "-01" }
	for name, tc := range map[string]struct {
		serverTP   string
		meta       mcp.Meta
		wantTrace  string // "" means a trace of its own
		wantParent string
		wantState  string
		wantWarn   string
	}{
		"the call's _meta.traceparent":        {meta: mcp.Meta{"traceparent": tp(callTrace, callSpan)}, wantTrace: callTrace, wantParent: callSpan},
		"the call's wins over the server's":   {serverTP: tp(serverTrace, serverSpan), meta: mcp.Meta{"traceparent": tp(callTrace, callSpan)}, wantTrace: callTrace, wantParent: callSpan},
		"the server's when the call has none": {serverTP: tp(serverTrace, serverSpan), wantTrace: serverTrace, wantParent: serverSpan},
		"tracestate goes with it": {meta: mcp.Meta{"traceparent": tp(callTrace, callSpan), "tracestate": "vendor=opaque"},
			wantTrace: callTrace, wantParent: callSpan, wantState: "vendor=opaque"},
		"a malformed tracestate is dropped": {meta: mcp.Meta{"traceparent": tp(callTrace, callSpan), "tracestate": "no equals sign"},
			wantTrace: callTrace, wantParent: callSpan, wantWarn: "tracestate dropped"},
		"a malformed call's falls back to the server's": {serverTP: tp(serverTrace, serverSpan), meta: mcp.Meta{"traceparent": "00-nonsense-01"},
			wantTrace: serverTrace, wantParent: serverSpan, wantWarn: "invalid traceparent"},
		"a malformed call's without a server's: a trace of its own": {meta: mcp.Meta{"traceparent": "00-nonsense-01"},
			wantWarn: "invalid traceparent"},
		"not a string":                    {meta: mcp.Meta{"traceparent": 42}, wantWarn: "_meta.traceparent must be a non-empty string"},
		"a malformed server's is ignored": {serverTP: "garbage", wantWarn: "the server's trace context (TRACEPARENT)"},
	} {
		t.Run(name, func(t *testing.T) {
			cs, exp, logs, temporal := tracedServer(t, tc.serverTP)
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Meta: tc.meta, Name: "inspect",
				Arguments: map[string]any{"service": "checkout", "rationale": "look first",
					"thoughts": []any{map[string]any{"content": "p99 is up", "confidence": 0.8}}}})
			require.NoError(t, err)
			text, _ := res.Content[0].(*mcp.TextContent)
			require.False(t, res.IsError, text.Text)
			assert.Contains(t, text.Text, "inspect ran and succeeded", "a trace header never stops a call")
			temporal.AssertNumberOfCalls(t, "ExecuteWorkflow", 1)

			spans := exp.GetSpans()
			require.Len(t, spans, 1, "the start span")
			s := spans[0]
			assert.Equal(t, "execute_tool inspect", s.Name)
			if tc.wantTrace == "" {
				assert.False(t, s.Parent.IsValid(), "a trace of its own")
				assert.NotContains(t, []string{callTrace, serverTrace}, s.SpanContext.TraceID().String())
			} else {
				assert.Equal(t, tc.wantTrace, s.SpanContext.TraceID().String(), "the agent's trace")
				assert.Equal(t, tc.wantParent, s.Parent.SpanID().String(), "a child of the agent's span")
				assert.True(t, s.Parent.IsRemote())
			}
			assert.Equal(t, tc.wantState, s.SpanContext.TraceState().String())
			require.Len(t, s.Events, 1)
			assert.Equal(t, starter.ThoughtEvent, s.Events[0].Name)

			if tc.wantWarn == "" {
				assert.NotContains(t, logs.String(), "level=WARN")
			} else {
				assert.Contains(t, logs.String(), "level=WARN")
				assert.Contains(t, logs.String(), tc.wantWarn)
			}
		})
	}
}
