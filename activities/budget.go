package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// HoldGrace is how long after its natural end (an action's deadline, an
// approval's timeout) a hold that nobody released lapses: the backstop for
// a lost release and a lost cycle report together.
const HoldGrace = 30 * time.Minute

// reserve takes a hold on the agent's budgets: nil, a non-retryable
// ErrTypeBudgetExhausted error naming the budget, or an error worth
// retrying. An agent without live state (no Temporal client, not in the
// catalog, no Agent workflow: a cycle from before agents had state) has no
// budget to count against. Concurrent reservations of one agent go to its
// workflow together (agent_batches.go).
func (a *Activities) reserve(ctx context.Context, r contract.ReserveRequest) error {
	if !a.hasAgentState(r.AgentID) {
		return nil
	}
	return a.reservations.ask(ctx, r.AgentID, r, contract.MaxReserveBatch, 1, a.reserveBatch)
}

// reserveOne asks with the single-request Update: the answer to one
// request, and the way back for a workflow that does not know batches.
func (a *Activities) reserveOne(ctx context.Context, r contract.ReserveRequest) error {
	var out contract.ReserveResult
	return reserveError(r, a.agentUpdate(ctx, r.AgentID, contract.UpdateReserve, r, &out))
}

// reserveError turns an Update's error into reserve's answer.
func reserveError(r contract.ReserveRequest, err error) error {
	var nf *serviceerror.NotFound
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		return nil
	case errors.As(err, &appErr) && appErr.Type() == contract.ErrTypeBudgetExhausted:
		var be policy.BudgetError
		if appErr.HasDetails() {
			_ = appErr.Details(&be)
		}
		return budgetExhausted(be, appErr.Message())
	default:
		return fmt.Errorf("reserve %s budget of agent %s: %w", r.Kind, r.AgentID, err)
	}
}

func budgetExhausted(be policy.BudgetError, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, contract.ErrTypeBudgetExhausted, nil, be)
}

// release gives a hold back: a signal (the caller waits for no workflow
// task; the agent applies it before its next reservation). Best effort: a
// release that cannot be delivered is logged, and the cycle's report (which
// releases all its holds) or the hold's lapse catches up.
func (a *Activities) release(ctx context.Context, h contract.BudgetHold) {
	if h.WorkflowID == "" || !a.hasAgentState(h.AgentID) {
		return
	}
	err := a.Temporal.SignalWorkflow(ctx, contract.AgentWorkflowID(h.AgentID), "", contract.SignalRelease, h)
	var nf *serviceerror.NotFound
	if err == nil || errors.As(err, &nf) {
		return
	}
	activity.GetLogger(ctx).Warn("release budget hold", "agent", h.AgentID, "workflow_id", h.WorkflowID, "index", h.Index, "kind", h.Kind, "error", err)
}

func (a *Activities) hasAgentState(agentID string) bool {
	if a.Temporal == nil || a.Catalog == nil {
		return false
	}
	_, ok := a.Catalog.Agent(agentID)
	return ok
}

// agentUpdate runs an Update on the agent's workflow and waits for its
// result (out may be nil).
func (a *Activities) agentUpdate(ctx context.Context, agentID, name string, arg, out any) error {
	h, err := a.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: contract.AgentWorkflowID(agentID), UpdateName: name,
		Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return h.Get(ctx, out)
}

// ReserveApproval takes a pending-approval hold for an action about to be
// posted for approval: the worker calls it from the message activity, so
// an approval over budget is refused before anything reaches Slack. (A
// function, not a method: every exported method of Activities is
// registered as an activity.) deadline is when the approval times out.
func ReserveApproval(ctx context.Context, a *Activities, agentID, workflowID string, index int, deadline time.Time) error {
	if deadline.IsZero() {
		deadline = time.Now().Add(policy.DefaultApprovalTimeout)
	}
	return a.reserve(ctx, contract.ReserveRequest{
		BudgetHold: contract.BudgetHold{AgentID: agentID, WorkflowID: workflowID, Index: index, Kind: policy.BudgetApproval},
		Until:      deadline.Add(HoldGrace),
	})
}
