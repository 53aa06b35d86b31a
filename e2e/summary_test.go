package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// An operator reads a cycle's timeline in the Temporal UI: the cycle says
// what it proposes, and each step says what it does to which action
// instead of a bare activity or timer name. Summaries are payloads: the
// codec encrypts them like the rest of the history.
func TestCycleTimelineReadsLikeAirlock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e-adv", CycleID: cycleID(t), Principal: "agent:e2e-adv",
		Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}, Rationale: "fix it"}}})
	require.NoError(t, err)
	var pending []contract.PendingAction
	require.Eventually(t, func() bool {
		pending, err = env.starter.Pending(ctx, run.WorkflowID)
		return err == nil && len(pending) == 1
	}, 30*time.Second, 50*time.Millisecond)
	_, err = env.starter.Decide(ctx, run.WorkflowID, contract.Decision{ActionIndex: 0, ActionHash: pending[0].Action.Hash,
		Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})
	require.NoError(t, err)
	res, err := run.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res)

	read := func(p *commonpb.Payload) string {
		t.Helper()
		require.True(t, codec.IsEncrypted(p), "summaries are encrypted in history")
		dec, err := env.codec.Decode([]*commonpb.Payload{p})
		require.NoError(t, err)
		var s string
		require.NoError(t, converter.GetDefaultDataConverter().FromPayload(dec[0], &s))
		return s
	}
	desc, err := env.tc.DescribeWorkflowExecution(ctx, run.WorkflowID, "")
	require.NoError(t, err)
	md := desc.GetExecutionConfig().GetUserMetadata()
	assert.Equal(t, "e2e-adv: quick-write db", read(md.GetSummary()))
	assert.Contains(t, read(md.GetDetails()), "- #0 quick-write db: fix it")

	var steps []string
	for _, ev := range rawHistory(ctx, t, run.WorkflowID).GetEvents() {
		if s := ev.GetUserMetadata().GetSummary(); s != nil {
			steps = append(steps, read(s))
		}
	}
	for _, want := range []string{
		"verify the agent's signature", "plan with the agent's state",
		"post approval message, action 0", "approval window, action 0",
		"stage quick-write #0", "run quick-write #0", "release quick-write #0",
		"update message, action 0: approved", "report to the agent",
	} {
		assert.Contains(t, steps, want)
	}
	assert.NotContains(t, steps, "AwaitWithTimeout")
}
