package workflows

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// ShadowFeedback posts the shadow message and records Agree/Disagree from
// the agent's approvers (validated like any decision) until each has
// answered or the window ends.
func ShadowFeedback(ctx workflow.Context, in contract.FeedbackRequest) (contract.FeedbackResult, error) {
	c := &cycle{
		req:   contract.CycleRequest{AgentID: in.AgentID, Principal: in.Principal, Thoughts: in.Thoughts},
		plan:  &policy.Plan{AgentID: in.AgentID, Approvers: in.Approvers, SlackChannel: in.SlackChannel},
		gates: map[int]*gate{},
	}
	if in.Signer != "" {
		c.identity = &identity{signer: in.Signer, principal: in.Principal}
	}
	c.res.WorkflowID = workflow.GetInfo(ctx).WorkflowExecution.ID
	if err := c.registerHandlers(ctx); err != nil {
		return contract.FeedbackResult{}, err
	}
	g := &gate{act: in.Action, notice: contract.NoticeShadow, status: statusRecorded, deadline: workflow.Now(ctx).Add(in.Window)}
	c.gates[in.Action.Index] = g
	if err := workflow.SetQueryHandler(ctx, contract.QueryFeedback, func() ([]contract.DecisionRecord, error) { return g.decisions, nil }); err != nil {
		return contract.FeedbackResult{}, err
	}
	ref := c.notify(ctx, g)
	wait := workflow.AwaitOptions{Timeout: in.Window, TimerOptions: workflow.TimerOptions{Summary: windowSummary(contract.NoticeShadow, in.Action.Index)}}
	_, _ = workflow.AwaitWithOptions(ctx, wait, func() bool { return len(g.decisions) >= len(in.Approvers) })
	g.closed = true
	c.settleOne(ctx, g, ref, "")
	return contract.FeedbackResult{CycleWorkflowID: in.CycleWorkflowID, Index: in.Action.Index, Decisions: g.decisions}, nil
}

// startFeedback starts the feedback workflow of a shadow action without
// waiting for it: it is abandoned when the cycle closes and lives on.
func (c *cycle) startFeedback(ctx workflow.Context, act policy.RenderedAction) (string, error) {
	id := contract.FeedbackWorkflowID(c.res.WorkflowID, act.Index)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        id,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	f := workflow.ExecuteChildWorkflow(cctx, contract.FeedbackWorkflowName, contract.FeedbackRequest{
		CycleWorkflowID: c.res.WorkflowID, AgentID: c.plan.AgentID, Principal: c.req.Principal, Signer: c.signer(),
		Approvers: c.plan.Approvers, SlackChannel: c.plan.SlackChannel, Action: act,
		Thoughts: c.req.Thoughts, Window: time.Duration(c.plan.ApprovalTimeout),
	})
	return id, f.GetChildWorkflowExecution().Get(ctx, nil)
}

// signer is the cycle's verified identity, or "" before verification.
func (c *cycle) signer() string {
	if c.identity == nil {
		return ""
	}
	return c.identity.signer
}
