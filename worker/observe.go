package worker

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
)

// observe makes the worker's metrics report what is true now when they are
// scraped (telemetry.Metrics.ObserveState): cycles waiting for a human and
// the agents' status and phases, read from Temporal. Without metrics it
// returns w as it is. The observation ends when the worker stops.
func observe(w sdkworker.Worker, c client.Client, acts *activities.Activities) sdkworker.Worker {
	if acts.Metrics == nil {
		return w
	}
	reg, err := acts.Metrics.ObserveState(StateReader(c, func() *policy.Catalog { return acts.Catalog }), nil)
	if err != nil {
		otel.Handle(err) // logged; the worker runs without these gauges
		return w
	}
	return &observedWorker{Worker: w, reg: reg}
}

// observedWorker unregisters the state observation when it stops.
type observedWorker struct {
	sdkworker.Worker
	reg metric.Registration
}

func (w *observedWorker) Stop() {
	w.Worker.Stop()
	_ = w.reg.Unregister()
}

func (w *observedWorker) Run(interruptCh <-chan any) error {
	defer func() { _ = w.reg.Unregister() }()
	return w.Worker.Run(interruptCh)
}

// StateReader reads the state the worker's gauges report: the cycles
// waiting for a human (visibility: AirlockOutcome="waiting", the list
// `airlock cycle pending` shows) and, for each agent of the catalog, what
// its Agent workflow published (its memo, the view cycles plan with). An
// agent whose workflow has not started yet is as the catalog seeds it.
func StateReader(c client.Client, catalog func() *policy.Catalog) telemetry.StateReader {
	st := starter.New(c)
	return func(ctx context.Context) (telemetry.State, error) {
		var out telemetry.State
		waiting, err := st.Waiting(ctx, 0)
		if err != nil {
			return out, err
		}
		for _, w := range waiting {
			out.Waiting = append(out.Waiting, telemetry.WaitingCycle{Agent: w.AgentID, Since: w.Started})
		}
		cat := catalog()
		if cat == nil {
			return out, nil
		}
		for _, id := range cat.AgentIDs() {
			ag, _ := cat.Agent(id)
			v, err := agentView(ctx, c, ag)
			if err != nil {
				return out, fmt.Errorf("agent %s: %w", id, err)
			}
			s := telemetry.AgentState{Agent: id, Status: string(v.Status), Phases: map[string]string{}}
			for class, p := range v.Phases {
				s.Phases[string(class)] = string(p)
			}
			out.Agents = append(out.Agents, s)
		}
		return out, nil
	}
}

// agentView reads an agent's published view: its running workflow's memo,
// else (a workflow from before the memo, or closed) its state query, else
// (never started) the catalog's seed.
func agentView(ctx context.Context, c client.Client, ag *policy.Agent) (contract.AgentView, error) {
	id := contract.AgentWorkflowID(ag.ID)
	d, err := c.DescribeWorkflow(ctx, id, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		seed := contract.SeedFor(ag)
		return contract.AgentView{Status: contract.AgentActive, Phases: seed.Phases, Caps: seed.Phases, Namespace: seed.Namespace}, nil
	}
	if err != nil {
		return contract.AgentView{}, err
	}
	if d.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		var v contract.AgentView
		if err := d.GetMemoValue(contract.AgentMemoKey, &v); err == nil && v.Status != "" {
			return v, nil
		}
	}
	val, err := c.QueryWorkflow(ctx, id, "", contract.QueryAgentState)
	if err != nil {
		return contract.AgentView{}, err
	}
	var st contract.AgentState
	if err := val.Get(&st); err != nil {
		return contract.AgentView{}, fmt.Errorf("decode agent state: %w", err)
	}
	return st.View(), nil
}

// killActivity is the kill switch's worker half (activities.KillAgent), as
// the worker registers it.
const killActivity = "KillAgent"

// killCounter counts the kills this worker carried out to the end
// (telemetry.Metrics.KillSwitchUsed): the activity that cancelled the
// agent's cycles, deleted its Jobs and revoked its token tree returned
// without error. A failed attempt that is retried counts once, when it
// succeeds.
type killCounter struct {
	interceptor.WorkerInterceptorBase
	acts *activities.Activities
}

func (k *killCounter) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &killCounting{acts: k.acts}
	i.Next = next
	return i
}

type killCounting struct {
	interceptor.ActivityInboundInterceptorBase
	acts *activities.Activities
}

func (i *killCounting) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	out, err := i.Next.ExecuteActivity(ctx, in)
	if err != nil || activity.GetInfo(ctx).ActivityType.Name != killActivity || len(in.Args) == 0 {
		return out, err
	}
	switch a := in.Args[0].(type) {
	case activities.KillAgentInput:
		i.acts.Metrics.KillSwitchUsed(ctx, a.AgentID)
	case *activities.KillAgentInput:
		i.acts.Metrics.KillSwitchUsed(ctx, a.AgentID)
	}
	return out, err
}
