package workflows

import (
	"strconv"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/policy"
)

// FeedbackWorkflowName collects Agree/Disagree on one shadow-mode action.
// It outlives its cycle (the cycle returns at once), so humans can give
// feedback at their pace; feedback never makes anything run.
const FeedbackWorkflowName = "ShadowFeedback"

// QueryFeedback returns the feedback recorded so far ([]DecisionRecord).
const QueryFeedback = "feedback"

// FeedbackWorkflowID names the feedback workflow of a cycle's action.
func FeedbackWorkflowID(cycleWorkflowID string, index int) string {
	return "feedback/" + cycleWorkflowID + "/" + strconv.Itoa(index)
}

// FeedbackRequest starts a ShadowFeedback workflow.
type FeedbackRequest struct {
	CycleWorkflowID string `json:"cycle_workflow_id"`
	AgentID         string `json:"agent_id"`
	Principal       string `json:"principal,omitempty"`
	// Signer is the cycle's verified identity ("agent:<id>"); empty for
	// cycles from before verification.
	Signer       string                `json:"signer,omitempty"`
	Approvers    []string              `json:"approvers"`
	SlackChannel string                `json:"slack_channel,omitempty"`
	Action       policy.RenderedAction `json:"action"`
	Thoughts     []Thought             `json:"thoughts,omitempty"`
	Window       time.Duration         `json:"window"`
}

// FeedbackResult is the feedback given on a shadow action.
type FeedbackResult struct {
	CycleWorkflowID string           `json:"cycle_workflow_id"`
	Index           int              `json:"index"`
	Decisions       []DecisionRecord `json:"decisions,omitempty"`
}

// ShadowFeedback posts the shadow message and records Agree/Disagree from
// the agent's approvers (validated like any decision) until each has
// answered or the window ends.
func ShadowFeedback(ctx workflow.Context, in FeedbackRequest) (FeedbackResult, error) {
	c := &cycle{
		req:   CycleRequest{AgentID: in.AgentID, Principal: in.Principal, Thoughts: in.Thoughts},
		plan:  &policy.Plan{AgentID: in.AgentID, Approvers: in.Approvers, SlackChannel: in.SlackChannel},
		gates: map[int]*gate{},
	}
	if in.Signer != "" {
		c.identity = &identity{signer: in.Signer, principal: in.Principal}
	}
	c.res.WorkflowID = workflow.GetInfo(ctx).WorkflowExecution.ID
	if err := c.registerHandlers(ctx); err != nil {
		return FeedbackResult{}, err
	}
	g := &gate{act: in.Action, notice: NoticeShadow, status: statusRecorded, deadline: workflow.Now(ctx).Add(in.Window)}
	c.gates[in.Action.Index] = g
	if err := workflow.SetQueryHandler(ctx, QueryFeedback, func() ([]DecisionRecord, error) { return g.decisions, nil }); err != nil {
		return FeedbackResult{}, err
	}
	ref := c.notify(ctx, g)
	_, _ = workflow.AwaitWithTimeout(ctx, in.Window, func() bool { return len(g.decisions) >= len(in.Approvers) })
	g.closed = true
	c.settleOne(ctx, g, ref, "")
	return FeedbackResult{CycleWorkflowID: in.CycleWorkflowID, Index: in.Action.Index, Decisions: g.decisions}, nil
}

// startFeedback starts the feedback workflow of a shadow action without
// waiting for it: it is abandoned when the cycle closes and lives on.
func (c *cycle) startFeedback(ctx workflow.Context, act policy.RenderedAction) (string, error) {
	id := FeedbackWorkflowID(c.res.WorkflowID, act.Index)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        id,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	f := workflow.ExecuteChildWorkflow(cctx, FeedbackWorkflowName, FeedbackRequest{
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
