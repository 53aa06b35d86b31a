package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/telemetry"
)

func TestOneTraceFromStarterThroughEveryActivityIntoThePod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env.spans.Reset()
	ctx, span := env.tel.Tracer().Start(ctx, "agent proposes cycle")
	traceID := span.SpanContext().TraceID()
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{
		{Type: "echo", Params: map[string]any{"text": "traced"}},
		{Type: "slow-write", Params: map[string]any{"target": "traced"}},
	}})
	span.End()
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)

	names := map[string]bool{}
	for _, s := range env.spans.GetSpans() {
		if s.SpanContext.TraceID() != traceID {
			continue
		}
		names[s.Name] = true
		if s.Name == "RunActivity:StageAction" {
			attrs := map[string]string{}
			for _, kv := range s.Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			assert.Equal(t, "e2e", attrs["airlock.agent"], "activity spans carry the agent")
			assert.Equal(t, res.WorkflowID, attrs["airlock.cycle"])
			assert.Equal(t, "autonomous", attrs["airlock.phase"])
			assert.Contains(t, []string{"0", "1"}, attrs["airlock.action.index"])
		}
	}
	for _, want := range []string{
		"agent proposes cycle", "StartWorkflow:AgentCycle", "RunWorkflow:AgentCycle",
		"StartActivity:StageAction", "RunActivity:StageAction",
		"StartActivity:RunJob", "RunActivity:RunJob",
		"StartActivity:ReleaseAction", "RunActivity:ReleaseAction",
	} {
		assert.True(t, names[want], "span %q is in the cycle's trace; have %v", want, names)
	}

	for _, a := range res.Actions {
		job, err := env.kube.BatchV1().Jobs(ns).Get(ctx, a.Job.Name, metav1.GetOptions{})
		require.NoError(t, err)
		tp := job.Spec.Template.Annotations[k8s.AnnotationTraceparent]
		require.NotEmpty(t, tp, "the Pod template carries the trace context")
		pods := podsOf(ctx, t, ns, a.Job.Name)
		require.Len(t, pods, 1)
		assert.Equal(t, tp, pods[0].Annotations[k8s.AnnotationTraceparent])
		var envTP string
		for _, e := range pods[0].Spec.Containers[0].Env {
			if e.Name == telemetry.EnvTraceParent {
				envTP = e.Value
			}
		}
		assert.Equal(t, tp, envTP, "and the TRACEPARENT env var")
		inJob := telemetry.ContextFromTraceParent(context.Background(), tp)
		_, child := env.tel.Tracer().Start(inJob, "work inside the job")
		assert.Equal(t, traceID, child.SpanContext().TraceID(), "work in the Job continues the cycle's trace")
		child.End()
	}
}

// scrape reads the worker's Prometheus endpoint.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	env.tel.PrometheusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	require.NoError(t, err)
	return fams
}

// sample sums the counters (or histogram counts) of the series that carry
// the given labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, m := range f.Metric {
		match := true
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if match {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func TestPrometheusEndpointCountsCyclesActionsAndLeases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := scrape(t)
	for _, acts := range [][]policy.Proposal{
		{{Type: "echo", Params: map[string]any{"text": "m1"}}, {Type: "echo", Params: map[string]any{"text": "m2"}}},
		{{Type: "broken"}},
	} {
		_, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t) + acts[0].Type, Actions: acts})
		require.NoError(t, err)
	}
	after := scrape(t)
	delta := func(name string, labels map[string]string) float64 {
		return sample(after, name, labels) - sample(before, name, labels)
	}
	assert.Equal(t, 1.0, delta("airlock_cycles_total", map[string]string{"agent": "e2e", "outcome": "succeeded", "phase": "autonomous"}))
	assert.Equal(t, 1.0, delta("airlock_cycles_total", map[string]string{"agent": "e2e", "outcome": "failed"}))
	assert.Equal(t, 2.0, delta("airlock_actions_total", map[string]string{"action_type": "echo", "outcome": "succeeded"}))
	assert.Equal(t, 1.0, delta("airlock_actions_total", map[string]string{"action_type": "broken", "outcome": "failed"}))
	assert.Equal(t, 3.0, delta("airlock_leases_issued_total", map[string]string{"kind": "token"}))
	assert.Equal(t, 3.0, delta("airlock_leases_revoked_total", map[string]string{"kind": "token"}))
	assert.Equal(t, 3.0, delta("airlock_job_duration_seconds", nil))
	assert.Positive(t, sample(after, "temporal_request_total", nil)+sample(after, "temporal_workflow_completed_total", nil), "the Temporal SDK's own metrics are there too")
}

func TestWorkerLogsCarryAgentCycleActionAndTraceIDs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx, span := env.tel.Tracer().Start(ctx, "agent proposes cycle")
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "logged"}}}})
	span.End()
	require.NoError(t, err)
	var line map[string]any
	for _, l := range strings.Split(env.logs.String(), "\n") {
		if strings.Contains(l, `"leased credentials"`) && strings.Contains(l, res.WorkflowID) {
			require.NoError(t, json.Unmarshal([]byte(l), &line))
		}
	}
	require.NotNil(t, line, "the worker logged the lease as JSON")
	assert.Equal(t, "e2e", line["agent"])
	assert.Equal(t, res.WorkflowID, line["cycle"])
	assert.Equal(t, res.WorkflowID, line["WorkflowID"])
	assert.NotEmpty(t, line["RunID"])
	assert.Equal(t, span.SpanContext().TraceID().String(), line["trace_id"])
	assert.Equal(t, res.Actions[0].LeaseAccessor, line["accessor"])
}

// Planning reads the agent's memo; the catalog is signalled to the agent's
// workflow only when it changed. An agent with trust settings of its own
// (not in the memo) once cost a signal, and an agent workflow task that
// the cycle's budget Update then queued behind, on every cycle.
func TestAnUnchangedCatalogIsNotResignalledEachCycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ag, ok := env.catalog.Agent("e2e")
	require.True(t, ok)
	require.False(t, ag.Trust.WithDefaults().Same(policy.Trust{}.WithDefaults()), "the e2e agent has trust settings of its own")
	run := func(n int) map[string]int {
		env.spans.Reset()
		ctx, span := env.tel.Tracer().Start(ctx, "agent proposes cycle")
		res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: "e2e", CycleID: fmt.Sprintf("%s-%d", cycleID(t), n),
			Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "unchanged"}}}})
		span.End()
		require.NoError(t, err)
		require.Equal(t, contract.OutcomeSucceeded, res.Outcome)
		names := map[string]int{}
		for _, s := range env.spans.GetSpans() {
			if s.SpanContext.TraceID() == span.SpanContext().TraceID() {
				names[s.Name]++
			}
		}
		require.Positive(t, names["RunActivity:PlanCycle"], "the cycle planned: %v", names)
		return names
	}
	run(1) // may deliver what this worker has not signalled yet
	for n := 2; n <= 3; n++ {
		assert.Zero(t, run(n)["SignalWorkflow:"+contract.SignalAgentCatalog], "cycle %d re-signalled an unchanged catalog", n)
	}
}

// A worker that has not delivered an agent's catalog yet (a new worker, its
// first burst of that agent's cycles) delivers it once, not once per cycle:
// each signal is an agent workflow task that the cycles' budget Updates then
// queue behind. Measured before: 20 cycles planning at once sent 14–16.
func TestANewWorkersBurstSignalsTheCatalogOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// An agent whose workflow only the burst tests touch (no continue-as-new
	// mid-test), with trust settings of its own, which only a signal delivers.
	const agent, n = "e2e-burst", 20
	ag, ok := env.catalog.Agent(agent)
	require.True(t, ok)
	require.False(t, ag.Trust.WithDefaults().Same(policy.Trust{}.WithDefaults()), "the agent has trust settings of its own")
	catalogSignals := func(since time.Time) int {
		count := 0
		for _, ev := range rawHistory(ctx, t, contract.AgentWorkflowID(agent)).Events {
			if s := ev.GetWorkflowExecutionSignaledEventAttributes(); s != nil && s.SignalName == contract.SignalAgentCatalog && !ev.EventTime.AsTime().Before(since) {
				count++
			}
		}
		return count
	}
	// The agent's workflow runs (the shared worker starts it with a cycle).
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agent, CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "first"}}}})
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	// A new worker's activities: nothing delivered yet.
	acts := &activities.Activities{Catalog: env.catalog, Temporal: env.tc}
	in := activities.PlanInput{AgentID: agent, Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "burst"}}}}
	plan := func() error {
		var suite testsuite.WorkflowTestSuite
		aenv := suite.NewTestActivityEnvironment()
		aenv.RegisterActivity(acts)
		v, err := aenv.ExecuteActivity(acts.PlanCycle, in)
		if err != nil {
			return err
		}
		var out activities.PlanCycleOutput
		if err := v.Get(&out); err != nil {
			return err
		}
		if out.Plan == nil || len(out.Plan.Actions) != 1 {
			return fmt.Errorf("no plan: %+v", out)
		}
		return nil
	}
	t0 := time.Now() // the server's clock is this machine's
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = plan() })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.NoError(t, plan(), "a later cycle")
	assert.Equal(t, 1, catalogSignals(t0), "%d cycles planning at once, then one more: the catalog is signalled once", n)
}
