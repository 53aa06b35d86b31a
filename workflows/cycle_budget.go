package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// budgetRefusal reports whether err is the agent's budget refusing an
// action (from StageAction or the approval message), with the budget and
// the message naming it.
func budgetRefusal(err error) (*policy.BudgetError, string) {
	var appErr *temporal.ApplicationError
	if err == nil || !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeBudgetExhausted {
		return nil, ""
	}
	var be policy.BudgetError
	if appErr.HasDetails() {
		_ = appErr.Details(&be)
	}
	if be.Budget == "" {
		be.Budget = "unknown"
	}
	return &be, appErr.Message()
}

// refuse records an approval the agent's budget refused.
func (c *cycle) refuse(ctx workflow.Context, act policy.RenderedAction, msg string, be *policy.BudgetError) {
	c.record(ctx, contract.AuditResult, idx(act.Index), msg, map[string]any{
		"outcome": contract.OutcomeDenied, "status": statusRefused, "budget": be.Budget, "used": be.Used, "limit": be.Limit,
	})
	policyDenial(ctx, c.plan.AgentID, "budget "+be.Budget)
}
