package starter

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/contract"
)

// ErrNoAgentState: the agent has no Agent workflow yet (it never ran a
// cycle and was never killed); its state is the catalog's.
var ErrNoAgentState = errors.New("agent has no live state yet")

// AgentState reads an agent's live state from its Agent workflow.
func (c *Client) AgentState(ctx context.Context, agentID string) (contract.AgentState, error) {
	var st contract.AgentState
	v, err := c.tc.QueryWorkflow(ctx, contract.AgentWorkflowID(agentID), "", contract.QueryAgentState)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return st, fmt.Errorf("agent %s: %w", agentID, ErrNoAgentState)
	}
	if err != nil {
		return st, fmt.Errorf("query agent %s: %w", agentID, err)
	}
	if err := v.Get(&st); err != nil {
		return st, fmt.Errorf("decode agent %s: %w", agentID, err)
	}
	return st, nil
}

// KillAgent is the kill switch, in one call: the agent is marked killed
// (its new cycles are refused from that moment), its running cycles are
// cancelled, its Jobs and Pods deleted and its Vault token tree revoked —
// every action token and every lease under it. It returns once all of that
// is done. by must be one of the agent's approvers; otherwise the call is
// refused (*RefusedError) and nothing changes.
func (c *Client) KillAgent(ctx context.Context, agentID, reason, by string) (contract.KillReport, error) {
	return c.Kill(ctx, agentID, contract.KillRequest{Reason: reason, By: by, Via: "api"})
}

// Kill is KillAgent with the whole request (Via names the channel).
func (c *Client) Kill(ctx context.Context, agentID string, req contract.KillRequest) (contract.KillReport, error) {
	var out contract.KillReport
	h, err := c.agentUpdate(ctx, agentID, contract.UpdateKill, req, true)
	if err != nil {
		return out, err
	}
	return out, updateError(agentID, h.Get(ctx, &out))
}

// RequestKill marks the agent killed and returns as soon as the kill is
// accepted, while its cycles, Jobs and credentials are still being
// stopped: for callers that must answer fast (a Slack click). Refusals are
// returned as from KillAgent.
func (c *Client) RequestKill(ctx context.Context, agentID string, req contract.KillRequest) error {
	h, err := c.agentUpdate(ctx, agentID, contract.UpdateKill, req, true)
	if err != nil {
		return err
	}
	// An accepted update is still running: asked with a context that is
	// already done, its handle says so at once; a refused one is complete
	// and answers with the refusal.
	done, cancel := context.WithCancel(ctx)
	cancel()
	err = h.Get(done, nil)
	var appErr *temporal.ApplicationError
	if err != nil && errors.As(err, &appErr) {
		return updateError(agentID, err)
	}
	return nil
}

// ResumeAgent brings a killed or suspended agent back, with every action
// class in shadow. It needs workflows.ResumeApprovers distinct approvers
// of the agent; fewer are refused (*RefusedError).
func (c *Client) ResumeAgent(ctx context.Context, agentID string, req contract.ResumeRequest) (contract.AgentState, error) {
	var st contract.AgentState
	h, err := c.agentUpdate(ctx, agentID, contract.UpdateResume, req, false)
	if err != nil {
		return st, err
	}
	return st, updateError(agentID, h.Get(ctx, &st))
}

// Promote asks to promote one action class of the agent one phase. The
// agent's workflow checks the gate (refused, with the numbers, while it is
// not met — unless req.Override with a reason and two approvers) and
// promotes once enough distinct approvers asked: the answer's Status is
// "promoted" or "waiting" (By so far, Needed).
func (c *Client) Promote(ctx context.Context, agentID string, req contract.PromoteRequest) (contract.Promotion, error) {
	var out contract.Promotion
	h, err := c.agentUpdate(ctx, agentID, contract.UpdatePromote, req, false)
	if err != nil {
		return out, err
	}
	return out, updateError(agentID, h.Get(ctx, &out))
}

// agentUpdate sends an update to the agent's workflow. With start, an
// agent that has no workflow yet gets one first (seeded from the worker's
// catalog), so an agent that never ran can still be killed.
func (c *Client) agentUpdate(ctx context.Context, agentID, name string, arg any, start bool) (client.WorkflowUpdateHandle, error) {
	id := contract.AgentWorkflowID(agentID)
	if start {
		if err := c.ensureAgent(ctx, agentID); err != nil {
			return nil, err
		}
	}
	h, err := c.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("agent %s: %w", agentID, ErrNoAgentState)
	}
	if err != nil {
		return nil, fmt.Errorf("%s agent %s: %w", name, agentID, err)
	}
	return h, nil
}

// ensureAgent starts the agent's workflow if it has none and waits until it
// has read its seed from the catalog (its first state answers a query).
func (c *Client) ensureAgent(ctx context.Context, agentID string) error {
	if _, err := c.AgentState(ctx, agentID); !errors.Is(err, ErrNoAgentState) {
		return nil // running (or not answering: the update will say why)
	}
	id := contract.AgentWorkflowID(agentID)
	_, err := c.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: c.taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, contract.AgentWorkflowName, contract.AgentInput{})
	if err != nil {
		return fmt.Errorf("start agent %s: %w", agentID, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.AgentState(ctx, agentID)
		if err == nil && st.Status != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent %s did not start: %v", agentID, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// updateError maps an update's failure: the validator's refusal (nothing
// changed) is a *RefusedError; a failure of the work itself is not.
func updateError(agentID string, err error) error {
	if err == nil {
		return nil
	}
	var actErr *temporal.ActivityError
	if errors.As(err, &actErr) {
		return fmt.Errorf("agent %s: %w", agentID, err)
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return &RefusedError{Reason: appErr.Message()}
	}
	return fmt.Errorf("agent %s: %w", agentID, err)
}
