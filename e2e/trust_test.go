package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Earned trust end to end: an agent whose writes start in shadow collects
// 30 signed Agree clicks, is offered a promotion, a human promotes it from
// Slack and its next write waits for approval; three denials in a row
// demote it back to shadow and its next write is a dry run only.
func TestEarnedTrustPromotionThenDemotion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const agent = "e2e-trust"
	endpoint := approvalEndpoint(t)
	write := policy.Proposal{Type: "quick-write", Params: map[string]any{"target": "db"}}
	state := func() contract.AgentState {
		st, err := env.starter.AgentState(ctx, agent)
		require.NoError(t, err)
		return st
	}

	// 1. Shadow: 30 proposals, each agreed with by a signed Slack click.
	for i := range 30 {
		res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agent, CycleID: fmt.Sprintf("%s-%d", cycleID(t), i), Actions: []policy.Proposal{write}})
		require.NoError(t, err)
		require.Equal(t, contract.OutcomeWouldDo, res.Actions[0].Outcome, "writes start in shadow")
		msg := waitPosted(t, res.WorkflowID)
		require.Eventually(t, func() bool {
			return slices.ContainsFunc(state().Shadow, func(p contract.ShadowProposal) bool { return p.WorkflowID == res.WorkflowID })
		}, 30*time.Second, 20*time.Millisecond)
		agree := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionAgree))
		require.Equal(t, http.StatusOK, click(t, endpoint, "U1", approval.ActionID(contract.DecisionAgree), agree, msg.Get("ts"), time.Now(), signingSecret).StatusCode)
	}

	// 2. The gate is met: the owners are offered a promotion; nothing
	// changes until a human decides.
	st := state()
	assert.Equal(t, policy.PhaseShadow, st.Phases[policy.ClassWrite], "a machine never promotes")
	require.Contains(t, st.Promotions, policy.ClassWrite)
	assert.Equal(t, contract.PromotionOffered, st.Promotions[policy.ClassWrite].Status)
	offer, ok := env.slack.message("chat.postMessage", agent+" earned a promotion")
	require.True(t, ok, "the promotion offer is posted")
	assert.Contains(t, offer.Get("blocks"), "30/30 shadow proposals with feedback")
	promote := buttonValue(t, offer.Get("blocks"), approval.ActionPromote)
	assert.Equal(t, http.StatusForbidden, click(t, endpoint, "U9", approval.ActionPromote, promote, offer.Get("ts"), time.Now(), signingSecret).StatusCode,
		"only the agent's approvers promote")
	require.Equal(t, http.StatusOK, click(t, endpoint, "U2", approval.ActionPromote, promote, offer.Get("ts"), time.Now().Add(time.Second), signingSecret).StatusCode)
	st = state()
	require.Equal(t, policy.PhaseAdvisory, st.Phases[policy.ClassWrite])
	last := st.Transitions[len(st.Transitions)-1]
	assert.Equal(t, contract.TransitionPromoted, last.Kind)
	assert.Equal(t, []string{"U2"}, last.By)
	assert.Equal(t, 30, last.Evidence.Feedback.Agree, "promoted on its evidence")

	out, err := cli(t, "agent", "show", agent)
	require.NoError(t, err, out)
	assert.Contains(t, out, "write advisory since")
	assert.Contains(t, out, "at the catalog's cap (advisory): no promotion")
	assert.Contains(t, out, "gate to advisory not met: ✗ 0/30 shadow proposals with feedback")

	// 3. Advisory: each write waits for a human; three denials in a row.
	for i := range 3 {
		run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: agent, CycleID: fmt.Sprintf("%s-deny-%d", cycleID(t), i), Actions: []policy.Proposal{write}})
		require.NoError(t, err)
		var pending []contract.PendingAction
		require.Eventually(t, func() bool {
			pending, err = env.starter.Pending(ctx, run.WorkflowID)
			return err == nil && len(pending) == 1
		}, 30*time.Second, 20*time.Millisecond, "the write waits for approval")
		_, err = env.starter.Decide(ctx, run.WorkflowID, contract.Decision{ActionHash: pending[0].Action.Hash, Kind: contract.DecisionDeny, Approver: "U1", Via: "cli", Comment: "not now"})
		require.NoError(t, err)
		res, err := run.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, contract.OutcomeDenied, res.Outcome)
	}
	require.Eventually(t, func() bool { return state().Phases[policy.ClassWrite] == policy.PhaseShadow }, 30*time.Second, 20*time.Millisecond,
		"three denials in a row demote the writes")
	st = state()
	last = st.Transitions[len(st.Transitions)-1]
	assert.Equal(t, contract.TransitionDemoted, last.Kind)
	assert.Equal(t, policy.TriggerDenials, last.Trigger)
	assert.Equal(t, 3, last.Evidence.Denied)
	_, ok = env.slack.message("chat.postMessage", agent+" demoted: write actions advisory → shadow")
	assert.True(t, ok, "the demotion is posted")

	// 4. The next write is a dry run only.
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agent, CycleID: cycleID(t) + "-after", Actions: []policy.Proposal{write}})
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeWouldDo, res.Actions[0].Outcome)
	assert.Equal(t, "admitted", res.Actions[0].DryRun)
	assert.Empty(t, jobsOf(ctx, t, "airlock-e2e-trust", res.WorkflowID))
	saveHistory(ctx, t, contract.AgentWorkflowID(agent), "agent/earned-trust-promoted-demoted")
}
