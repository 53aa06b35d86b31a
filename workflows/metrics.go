package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/telemetry"
)

// Cycle metrics go through the SDK's metrics handler (the worker's client
// gives it Airlock's meter, telemetry.TemporalMetricsHandler). The handler a
// workflow gets drops whatever is recorded during a replay, so a history
// replayed on another worker never counts twice, and workflow code needs no
// sink of its own. It adds the namespace, task queue and workflow type tags.

func cycleFinished(ctx workflow.Context, agent, phase, outcome string) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{
		telemetry.AttrAgent: agent, telemetry.AttrPhase: phase, telemetry.AttrOutcome: outcome,
	}).Counter(telemetry.MetricCycles).Inc(1)
}

func approvalWait(ctx workflow.Context, agent string, d time.Duration, outcome string) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{
		telemetry.AttrAgent: agent, telemetry.AttrOutcome: outcome,
	}).Timer(telemetry.MetricApprovalWait).Record(d)
}

func policyDenial(ctx workflow.Context, agent, rule string) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{
		telemetry.AttrAgent: agent, telemetry.AttrRule: rule,
	}).Counter(telemetry.MetricPolicyDenials).Inc(1)
}

// clickToRun records, for an action a human approved, the time from the
// approval that let it run (the last one, when it took two) to its
// container starting, as the Job reported it (1 s resolution, so a
// negative difference is clock rounding and counts as 0). A veto window
// that passed, an action that never started or a replay records nothing.
func clickToRun(ctx workflow.Context, agent, status string, decisions []contract.DecisionRecord, r contract.ActionResult) {
	if status != statusApproved || r.StartedAt.IsZero() {
		return
	}
	var approved time.Time
	for _, d := range decisions {
		if d.Kind == contract.DecisionApprove && d.At.After(approved) {
			approved = d.At
		}
	}
	if approved.IsZero() {
		return
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{telemetry.AttrAgent: agent}).
		Timer(telemetry.MetricClickToRun).Record(max(r.StartedAt.Sub(approved), 0))
}

// agentTransition counts an agent's transitions (promotions, demotions,
// versions, declines) by kind.
func agentTransition(ctx workflow.Context, agent, kind string) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{
		telemetry.AttrAgent: agent, telemetry.AttrKind: kind,
	}).Counter(telemetry.MetricAgentTransitions).Inc(1)
}
