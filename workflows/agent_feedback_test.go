package workflows_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Shadow feedback lands on the agent's workflow, long after the shadow
// cycle ended: every refusal reason is refused before reaching history, a
// second click changes nothing, and what is recorded is counted per class.
func TestAgentRecordsShadowFeedbackFromItsApproversOnly(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	start := s.env.Now()
	proposal := contract.ShadowProposal{WorkflowID: "cycle/adv/c1", Index: 1, Type: "scale", Class: policy.ClassWrite, Hash: "h1",
		Selves: []string{"agent:adv", "alice"}, Until: start.Add(30 * time.Minute)}
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "succeeded",
			Actions: map[string]int{"would_do": 1}, Shadow: []contract.ShadowProposal{proposal}})
	}, time.Minute)
	fb := func(approver string, kind contract.DecisionKind, mutate ...func(*contract.FeedbackDecision)) contract.FeedbackDecision {
		f := contract.FeedbackDecision{CycleWorkflowID: "cycle/adv/c1",
			Decision: contract.Decision{ActionIndex: 1, ActionHash: "h1", Kind: kind, Approver: approver, Via: "slack"}}
		for _, m := range mutate {
			m(&f)
		}
		return f
	}
	steps := []contract.FeedbackDecision{
		fb("U1", contract.DecisionAgree, func(f *contract.FeedbackDecision) { f.CycleWorkflowID = "cycle/adv/c9" }), // unknown
		fb("U1", contract.DecisionAgree),
		fb("U1", contract.DecisionDisagree),     // second answer: already decided
		fb("U3", contract.DecisionApprove),      // feedback can never approve
		fb("agent:adv", contract.DecisionAgree), // the agent itself
		fb("U9", contract.DecisionAgree),        // not an approver
		fb("U2", contract.DecisionAgree, func(f *contract.FeedbackDecision) { f.ActionHash = "h0" }), // changed action
		fb("U2", contract.DecisionDisagree),
	}
	for i, f := range steps {
		s.update(time.Duration(i+2)*time.Minute, &log, contract.UpdateFeedback, f)
	}
	s.update(45*time.Minute, &log, contract.UpdateFeedback, fb("U3", contract.DecisionAgree)) // window closed
	var st contract.AgentState
	s.stateAt(t, 44*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)

	require.Len(t, log.rejected, 6, "%v", log.rejected)
	for i, want := range []string{
		"no shadow proposal 1 of cycle/adv/c9 awaits feedback",
		`"approve" is not a valid decision for a shadow proposal`,
		"agent:adv requested this cycle and cannot give feedback on it",
		"U9 is not an approver of agent adv",
		"stale decision: the action changed since it was shown",
		"the feedback window of action 1 closed at",
	} {
		assert.Contains(t, log.rejected[i], want)
	}
	require.Len(t, log.completed, 3)
	statuses := make([]string, 0, 3)
	for _, v := range log.completed {
		statuses = append(statuses, v.(contract.DecisionResult).Status)
	}
	assert.Equal(t, []string{"recorded", "already decided", "recorded"}, statuses)

	assert.Equal(t, map[policy.Class]contract.FeedbackCount{policy.ClassWrite: {Agree: 1, Disagree: 1}}, st.Counters.Feedback)
	require.Len(t, st.Shadow, 1)
	got := st.Shadow[0].Feedback
	require.Len(t, got, 2)
	assert.Equal(t, []string{"U1:agree", "U2:disagree"}, []string{got[0].Approver + ":" + string(got[0].Kind), got[1].Approver + ":" + string(got[1].Kind)})
}

// The agent keeps a bounded set of open proposals: expired ones and, past
// AgentShadowKept, the oldest are dropped.
func TestAgentKeepsABoundedSetOfOpenShadowProposals(t *testing.T) {
	s := newAgentEnv(t)
	start := s.env.Now()
	report := func(cycle string, n int, until time.Time) contract.CycleReport {
		r := contract.CycleReport{WorkflowID: "cycle/adv/" + cycle, AgentID: "adv", Outcome: "succeeded"}
		for i := range n {
			r.Shadow = append(r.Shadow, contract.ShadowProposal{WorkflowID: r.WorkflowID, Index: i, Class: policy.ClassWrite, Hash: fmt.Sprint(i), Until: until})
		}
		return r
	}
	reports := []contract.CycleReport{
		report("short", 10, start.Add(5*time.Minute)), // expired by the next report
		report("a", contract.AgentShadowKept, start.Add(time.Hour)),
		report("b", 3, start.Add(time.Hour)),
	}
	for i, r := range reports {
		s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.SignalReportCycle, r) }, time.Duration(i*10+1)*time.Minute)
	}
	var st contract.AgentState
	s.stateAt(t, 40*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)
	require.Len(t, st.Shadow, contract.AgentShadowKept)
	assert.Equal(t, "cycle/adv/a", st.Shadow[0].WorkflowID)
	assert.Equal(t, 3, st.Shadow[0].Index, "the three oldest of cycle a made room")
	assert.Equal(t, "cycle/adv/b", st.Shadow[len(st.Shadow)-1].WorkflowID)
}

// Cycles read the agent from its memo: the view is published when the
// agent is seeded and whenever it changes (a kill), and not for reports,
// which change only counters.
func TestAgentPublishesItsViewInItsMemo(t *testing.T) {
	s := newAgentEnv(t)
	var views []contract.AgentView
	s.env.OnUpsertMemo(mock.Anything).Run(func(args mock.Arguments) {
		memo := args.Get(0).(map[string]any)
		v, ok := memo[contract.AgentMemoKey].(contract.AgentView)
		require.True(t, ok, "memo: %v", memo)
		views = append(views, v)
	}).Return(nil)
	var log updateLog
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "succeeded"})
	}, time.Minute)
	s.update(2*time.Minute, &log, contract.UpdateKill, contract.KillRequest{Reason: "runaway", By: "U1"})
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)
	require.Empty(t, log.rejected)
	require.Len(t, views, 2, "seeded, then killed; the report changed no view")
	assert.Equal(t, contract.AgentActive, views[0].Status)
	assert.Equal(t, advSeed.Phases, views[0].Phases)
	assert.Equal(t, advSeed.Approvers, views[0].Approvers)
	assert.Equal(t, contract.AgentKilled, views[1].Status)
	assert.Contains(t, views[1].Why, "runaway")
}
