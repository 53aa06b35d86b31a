package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/telemetry"
)

// probe stands in for StageAction: it hands the Job the activity's
// traceparent and logs with the activity context.
type probe struct{ tel *telemetry.Telemetry }

func (p *probe) Stage(ctx context.Context) (string, error) {
	p.tel.Logger.InfoContext(ctx, "staging")
	return telemetry.TraceParent(ctx), nil
}

func probeWorkflow(ctx workflow.Context) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	// Workflow code reaches our meter through the SDK's replay-aware handler.
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"agent": "probe"}).Counter("probe_workflow_runs").Inc(1)
	var p *probe
	var tp string
	err := workflow.ExecuteActivity(ctx, p.Stage).Get(ctx, &tp)
	return tp, err
}

func TestTemporalHooks(t *testing.T) {
	clearOTelEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tel, logs := setup(t, telemetry.Config{SpanExporter: exp})

	ints, err := tel.TemporalInterceptors()
	require.NoError(t, err)
	require.Len(t, ints, 1)
	wi, ok := ints[0].(interceptor.WorkerInterceptor)
	require.True(t, ok, "the client interceptor also intercepts workers built from the client")

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(tel.Logger))
	suite.SetMetricsHandler(tel.TemporalMetricsHandler())
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{wi}})
	env.RegisterWorkflow(probeWorkflow)
	env.RegisterActivity(&probe{tel: tel})

	env.ExecuteWorkflow(probeWorkflow)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var tp string
	require.NoError(t, env.GetWorkflowResult(&tp))

	// The activity's context held the interceptor's RunActivity span.
	spans := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		spans[s.Name] = s
	}
	run, ok := spans["RunActivity:Stage"]
	require.True(t, ok, "spans: %v", keys(spans))
	sc := run.SpanContext
	assert.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", tp)
	assert.Equal(t, spans["RunWorkflow:probeWorkflow"].SpanContext.TraceID(), sc.TraceID(), "activity and workflow share the trace")
	assert.Contains(t, logs.String(), `"trace_id":"`+sc.TraceID().String()+`"`)

	// What the SDK records through its metrics handler reaches our
	// Prometheus endpoint, as a counter.
	fams := scrape(t, tel.PrometheusHandler())
	assert.Equal(t, map[string]float64{"agent=probe": 1}, series(t, fams, "probe_workflow_runs_total"))
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
