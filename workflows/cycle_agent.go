package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// agentOptions: reading the agent's state is a query (≈ms) run as a local
// activity, so the answer is recorded in the cycle's history. An outage is
// retried for a while, then the cycle fails closed.
var (
	agentOptions = workflow.LocalActivityOptions{
		Summary:                "plan with the agent's state",
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        200 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        10 * time.Second,
			NonRetryableErrorTypes: []string{contract.ErrTypeInvalidRequest, contract.ErrTypeAgentUnavailable},
		},
	}
	reportOptions = workflow.LocalActivityOptions{
		Summary:                "report to the agent",
		StartToCloseTimeout:    15 * time.Second,
		ScheduleToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        200 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        15 * time.Second,
			NonRetryableErrorTypes: []string{contract.ErrTypeInvalidRequest},
		},
	}
)

// planForAgent reads the agent's status and phases from its Agent workflow
// and plans with them, in one local activity (one marker in history). Only
// an active agent's cycle is planned; its phases (never above the
// catalog's) replace the catalog's.
func (c *cycle) planForAgent(ctx workflow.Context) (policy.Plan, error) {
	var a *activities.Activities
	var out activities.PlanCycleOutput
	lctx := workflow.WithLocalActivityOptions(ctx, agentOptions)
	err := workflow.ExecuteLocalActivity(lctx, a.PlanCycle, activities.PlanInput{AgentID: c.req.AgentID, Actions: c.req.Actions, Version: c.req.Version}).Get(ctx, &out)
	var appErr *temporal.ApplicationError
	switch {
	case err != nil && ctx.Err() != nil:
		return policy.Plan{}, temporal.NewCanceledError()
	case err != nil && errors.As(err, &appErr) && appErr.Type() == contract.ErrTypeInvalidRequest:
		c.refusePlan(ctx, err)
		return policy.Plan{}, err
	case err != nil:
		c.record(ctx, contract.AuditAgent, nil, "request refused: agent state unavailable", map[string]any{"error": errorMessage(err)})
		if appErr != nil {
			return policy.Plan{}, err
		}
		return policy.Plan{}, temporal.NewNonRetryableApplicationError("agent state unavailable: "+errorMessage(err), contract.ErrTypeAgentUnavailable, err)
	}
	st := out.Agent
	if st.Status != contract.AgentActive || out.Plan == nil {
		c.agentRefused = true
		msg := fmt.Sprintf("agent %s is %s", c.req.AgentID, st.Status)
		if st.Why != "" {
			msg += ": " + st.Why
		}
		c.record(ctx, contract.AuditAgent, nil, "request refused: "+msg, map[string]any{"status": st.Status, "why": st.Why})
		policyDenial(ctx, c.req.AgentID, "agent "+string(st.Status))
		return policy.Plan{}, temporal.NewNonRetryableApplicationError(msg, contract.ErrTypeInvalidRequest, nil)
	}
	c.record(ctx, contract.AuditAgent, nil, "agent active", map[string]any{"status": st.Status, "phases": st.Phases})
	c.noteRole(ctx, out)
	return *out.Plan, nil
}

// reportToAgent tells the agent how the cycle ended, on every path, on a
// disconnected context (a cancelled cycle reports too). A report that
// cannot be delivered is logged: it never changes the cycle's outcome.
func (c *cycle) reportToAgent(ctx workflow.Context, err error) {
	c.awaitReport(ctx, c.startReport(ctx, err))
}

// startReport builds the cycle's report and starts sending it.
func (c *cycle) startReport(ctx workflow.Context, err error) workflow.Future {
	r := contract.CycleReport{WorkflowID: c.res.WorkflowID, AgentID: c.req.AgentID, Outcome: string(c.res.Outcome), Actions: map[string]int{},
		Shadow: c.shadowed}
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
	case ctx.Err() != nil || errors.As(err, &canceled):
		r.Outcome = "canceled"
	case errors.As(err, &appErr) && appErr.Type() == contract.ErrTypeInvalidRequest:
		r.Outcome, r.Reason = "refused", appErr.Message()
		switch {
		case c.agentRefused:
		case c.identity == nil:
			r.Unverified = true
		default:
			r.Violation = true
		}
	default:
		r.Outcome, r.Reason = string(contract.OutcomeFailed), errorMessage(err)
	}
	for _, a := range c.res.Actions {
		o := string(a.Outcome)
		if r.Outcome == "canceled" && a.Outcome == contract.OutcomeFailed && strings.HasSuffix(a.Error, "canceled") {
			o = "canceled" // stopped by the cancellation, not a failure of the agent's
		}
		r.Actions[o]++
		switch {
		case a.Budget != "":
			if r.Refusals == nil {
				r.Refusals = map[string]int{}
			}
			r.Refusals[a.Budget]++
		case a.Outcome == contract.OutcomeDenied:
			r.Denials++
		case a.Decision.Mode == policy.ModeApprove && len(a.Decisions) > 0:
			r.Approvals++
		}
	}
	r.Details = c.details()
	c.versionReport(&r)
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var a *activities.Activities
	lctx := workflow.WithLocalActivityOptions(dctx, reportOptions)
	return workflow.ExecuteLocalActivity(lctx, a.ReportCycle, r)
}

// awaitReport waits for the report; one that cannot be delivered is logged.
func (c *cycle) awaitReport(ctx workflow.Context, f workflow.Future) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var out contract.ReportCycleResult
	if err := f.Get(dctx, &out); err != nil {
		workflow.GetLogger(ctx).Warn("report cycle to agent", "agent", c.req.AgentID, "error", err)
	}
}

// notifyDone tells humans after an autonomous write ran (NoticeDone), and
// what became of it if it failed.
func (c *cycle) notifyDone(ctx workflow.Context, act policy.RenderedAction, r contract.ActionResult) {
	if ctx.Err() != nil || (r.Outcome != contract.OutcomeSucceeded && r.Outcome != contract.OutcomeFailed) {
		return
	}
	g := &gate{act: act, notice: contract.NoticeDone, closed: true, status: string(r.Outcome)}
	ref := c.notify(ctx, g)
	if r.Outcome == contract.OutcomeFailed {
		detail := r.Error
		if r.Rollback != nil {
			detail += fmt.Sprintf("; rollback %s: %s", r.Rollback.Type, r.Rollback.Outcome)
		}
		c.settleOne(ctx, g, ref, detail)
	}
}

// details are the cycle's actions as its agent's evidence.
func (c *cycle) details() []contract.ActionReport {
	if c.plan == nil {
		return nil
	}
	class := map[int]policy.Class{}
	for _, act := range c.plan.Actions {
		class[act.Index] = act.Class
	}
	var out []contract.ActionReport
	for _, a := range c.res.Actions {
		d := contract.ActionReport{Index: a.Index, Type: a.Type, Class: class[a.Index], Phase: a.Decision.Phase, Mode: a.Decision.Mode,
			Outcome: a.Outcome, Budget: a.Budget, Ran: ran(a), RolledBack: a.Rollback != nil && ran(*a.Rollback)}
		for _, dec := range a.Decisions {
			switch dec.Kind {
			case contract.DecisionApprove:
				d.Approved = true
			case contract.DecisionDeny:
				d.Denied = true
			case contract.DecisionStop:
				d.Stopped = true
			}
		}
		if d.Denied || d.Stopped {
			d.Approved = false
		}
		if a.Outcome == contract.OutcomeDenied && !d.Denied && !d.Stopped && a.Budget == "" && a.Decision.Mode == policy.ModeApprove {
			d.Expired = true
		}
		if d.Approved && a.Outcome == contract.OutcomeDenied {
			// Two approvers needed, one came, then the window closed.
			d.Approved, d.Expired = false, true
		}
		out = append(out, d)
	}
	return out
}

// ran reports whether the action's Job ran to an end (a Job that failed is
// the agent's failure; a stage that could not lease is not).
func ran(a contract.ActionResult) bool {
	return a.Outcome == contract.OutcomeSucceeded || (a.Outcome == contract.OutcomeFailed && strings.HasPrefix(a.Error, jobFailedPrefix))
}
