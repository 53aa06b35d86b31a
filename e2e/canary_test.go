package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Canary versions end to end: the agent's runtime sends the same input to
// its trusted version v1 and its canary v2 with a shared correlation_id.
// v1's write runs as a real Job; v2's is a dry run (no Job). Both agree,
// which is recorded on the agent and visible in `agent show`; the offer
// reaches Slack with Promote and Not yet; a signed "Not yet" is recorded;
// a human promotes v2 from the CLI; v2's writes then run and v1's are dry
// runs; `agent history` shows all of it.
func TestCanaryVersionIsDryRunPairedAndPromotedByAHuman(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const agent, ns = "e2e-canary", "airlock-e2e-canary"
	endpoint := approvalEndpoint(t)
	write := policy.Proposal{Type: "quick-write", Params: map[string]any{"target": "db"}}
	state := func() contract.AgentState {
		st, err := env.starter.AgentState(ctx, agent)
		require.NoError(t, err)
		return st
	}
	base := cycleID(t) // unique per call
	cycle := func(version, input string) contract.CycleResult {
		res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agent, CycleID: fmt.Sprintf("%s-%s-%s", base, input, version),
			Version: version, CorrelationID: base + "-" + input, Actions: []policy.Proposal{write}})
		require.NoError(t, err)
		return res
	}

	var canaryWF string
	for i := range 2 {
		input := fmt.Sprint("in", i)
		trusted := cycle("v1", input)
		require.Equal(t, contract.OutcomeSucceeded, trusted.Outcome, "%+v", trusted.Actions)
		assert.NotEmpty(t, jobsOf(ctx, t, ns, trusted.WorkflowID), "the trusted version's write ran as a Job")
		canary := cycle("v2", input)
		require.Equal(t, contract.OutcomeWouldDo, canary.Actions[0].Outcome, "the canary's write is a dry run")
		assert.Equal(t, "admitted", canary.Actions[0].DryRun)
		assert.Equal(t, policy.PhaseShadow, canary.Actions[0].Decision.Phase)
		assert.Empty(t, jobsOf(ctx, t, ns, canary.WorkflowID), "no Job for the canary")
		canaryWF = canary.WorkflowID
	}
	require.Eventually(t, func() bool {
		c := state().Versions.Canary
		return c != nil && c.Agreed == 2
	}, 30*time.Second, 20*time.Millisecond, "both pairs agree")
	st := state()
	assert.Equal(t, "v1", st.Versions.Trusted, "a machine never promotes")
	assert.Equal(t, 2, st.Versions.Canary.Pairs)
	assert.Zero(t, st.Versions.Canary.Disagreed)

	out, err := cli(t, "agent", "show", agent)
	require.NoError(t, err, out)
	assert.Contains(t, out, "versions: trusted v1")
	assert.Contains(t, out, "canary v2 since")
	assert.Contains(t, out, "2 pairs (2 same actions, 0 different)")
	assert.Contains(t, out, "gate to trusted met")

	// The offer: Promote and Not yet. A signed "Not yet" is recorded.
	var offer = waitMessage(t, "canary version v2")
	assert.Contains(t, offer.Get("blocks"), "Not yet")
	notYet := buttonValue(t, offer.Get("blocks"), approval.ActionNotYet)
	assert.Equal(t, http.StatusForbidden, click(t, endpoint, "U9", approval.ActionNotYet, notYet, offer.Get("ts"), time.Now(), signingSecret).StatusCode,
		"only the agent's approvers decide")
	require.Equal(t, http.StatusOK, click(t, endpoint, "U1", approval.ActionNotYet, notYet, offer.Get("ts"), time.Now().Add(time.Second), signingSecret).StatusCode)
	st = state()
	require.NotNil(t, st.Versions.Offer)
	assert.Equal(t, contract.PromotionDeclined, st.Versions.Offer.Status)
	assert.Equal(t, []string{"U1"}, st.Versions.Offer.DeclinedBy)
	assert.Equal(t, "v1", st.Versions.Trusted)

	// A human promotes the version from the CLI.
	out, err = cli(t, "agent", "promote", agent, "--version", "v2", "--by", "U2")
	require.NoError(t, err, out)
	assert.Contains(t, out, "version v2 -> trusted promoted by U2")
	st = state()
	assert.Equal(t, "v2", st.Versions.Trusted)
	assert.Equal(t, []string{"v1"}, st.Versions.Retired)

	assert.Equal(t, contract.OutcomeSucceeded, cycle("v2", "after").Outcome, "the promoted version's write runs")
	assert.Equal(t, contract.OutcomeWouldDo, cycle("v1", "after").Actions[0].Outcome, "the retired version is a canary")

	require.Eventually(t, func() bool {
		c := state().Versions.Canary
		return c != nil && c.Version == "v1"
	}, 30*time.Second, 20*time.Millisecond, "the retired version is the canary now")
	out, err = cli(t, "agent", "history", agent)
	require.NoError(t, err, out)
	assert.Contains(t, out, "canary version v2: version v2 is the canary")
	assert.Contains(t, out, "declined version v2 by U1: promotion of version v2 → trusted declined: not yet")
	assert.Contains(t, out, "version-promoted version v2 by U2: version v2 promoted to trusted (v1 retired")
	assert.Contains(t, out, "canary v2 evidence: 2 pairs (2 same actions, 0 different)")
	assert.Contains(t, out, "canary version v1: version v1 is the canary")

	saveHistory(ctx, t, canaryWF, "canary-shadow")
	saveHistory(ctx, t, contract.AgentWorkflowID(agent), "agent/canary-paired-declined-promoted")
}

// waitMessage waits for a Slack message containing needle.
func waitMessage(t *testing.T, needle string) (msg url.Values) {
	t.Helper()
	require.Eventually(t, func() bool {
		var ok bool
		msg, ok = env.slack.message("chat.postMessage", needle)
		return ok
	}, 30*time.Second, 20*time.Millisecond, "no message with %q", needle)
	return msg
}
