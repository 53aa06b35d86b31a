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

	"github.com/airlockhq/airlock/policy"
)

// ErrTypeBudgetExhausted: the action would exceed one of its agent's
// budgets; it is refused, not queued. The error's details hold the
// policy.BudgetError naming the budget.
const ErrTypeBudgetExhausted = "BudgetExhausted"

// HoldGrace is how long after its natural end (an action's deadline, an
// approval's timeout) a hold that nobody released lapses: the backstop for
// a lost release and a lost cycle report together.
const HoldGrace = 30 * time.Minute

// BudgetHold names one hold on an agent's budgets: a running Job or a
// pending approval of one action of one cycle. Holds are idempotent by
// (WorkflowID, Index, Kind): asking again for a held one changes nothing.
type BudgetHold struct {
	AgentID    string            `json:"agent_id"`
	WorkflowID string            `json:"workflow_id"`
	Index      int               `json:"index"`
	Kind       policy.BudgetKind `json:"kind"`
}

// ReserveRequest asks the agent's workflow for a hold (Update "reserve");
// over budget the Update fails with ErrTypeBudgetExhausted.
type ReserveRequest struct {
	BudgetHold
	// Until is when the hold lapses if nobody releases it.
	Until time.Time `json:"until"`
	// Compensation (a rollback after an autonomous failure) is counted but
	// never refused: refusing it would leave a failed write half done.
	Compensation bool `json:"compensation,omitempty"`
}

// ReserveResult is what the agent's workflow granted.
type ReserveResult struct {
	// Held: the hold existed already (a retried staging or a reminder).
	Held bool `json:"held,omitempty"`
	// Use is the agent's budget use with this hold.
	Use policy.BudgetUse `json:"use"`
}

// reserve takes a hold on the agent's budgets: nil, a non-retryable
// ErrTypeBudgetExhausted error naming the budget, or an error worth
// retrying. An agent without live state (no Temporal client, not in the
// catalog, no Agent workflow: a cycle from before agents had state) has no
// budget to count against.
func (a *Activities) reserve(ctx context.Context, r ReserveRequest) error {
	if !a.hasAgentState(r.AgentID) {
		return nil
	}
	var out ReserveResult
	err := a.agentUpdate(ctx, r.AgentID, AgentUpdateReserve, r, &out)
	var nf *serviceerror.NotFound
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		return nil
	case errors.As(err, &appErr) && appErr.Type() == ErrTypeBudgetExhausted:
		var be policy.BudgetError
		if appErr.HasDetails() {
			_ = appErr.Details(&be)
		}
		return temporal.NewNonRetryableApplicationError(appErr.Message(), ErrTypeBudgetExhausted, nil, be)
	default:
		return fmt.Errorf("reserve %s budget of agent %s: %w", r.Kind, r.AgentID, err)
	}
}

// release gives a hold back: a signal (the caller waits for no workflow
// task; the agent applies it before its next reservation). Best effort: a
// release that cannot be delivered is logged, and the cycle's report (which
// releases all its holds) or the hold's lapse catches up.
func (a *Activities) release(ctx context.Context, h BudgetHold) {
	if h.WorkflowID == "" || !a.hasAgentState(h.AgentID) {
		return
	}
	err := a.Temporal.SignalWorkflow(ctx, AgentWorkflowID(h.AgentID), "", AgentSignalRelease, h)
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
		WorkflowID: AgentWorkflowID(agentID), UpdateName: name,
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
	return a.reserve(ctx, ReserveRequest{
		BudgetHold: BudgetHold{AgentID: agentID, WorkflowID: workflowID, Index: index, Kind: policy.BudgetApproval},
		Until:      deadline.Add(HoldGrace),
	})
}
