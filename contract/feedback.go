package contract

import (
	"strconv"
	"time"

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
