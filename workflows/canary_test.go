package workflows_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// A canary version's writes are dry runs whatever phase the agent earned
// (here: autonomous), with no Slack message; the trusted version's same
// write runs. Both report their proposals with the same effect hash.
func TestCanaryWritesRunInShadowWhateverThePhase(t *testing.T) {
	for name, tc := range map[string]struct {
		version, trusted string
		role             policy.VersionRole
		wantRuns         int
		want             contract.Outcome
	}{
		"trusted version runs":                {version: "v1", trusted: "v1", role: policy.RoleTrusted, wantRuns: 2, want: contract.OutcomeSucceeded},
		"canary version is a dry run":         {version: "v2", trusted: "v1", role: policy.RoleCanary, wantRuns: 1, want: contract.OutcomeWouldDo},
		"unknown version, none trusted":       {version: "v1", role: policy.RoleCanary, wantRuns: 1, want: contract.OutcomeWouldDo},
		"no version from a versioned agent":   {trusted: "v1", role: policy.RoleCanary, wantRuns: 1, want: contract.OutcomeWouldDo},
		"no version, none trusted: as before": {role: policy.RoleUnversioned, wantRuns: 2, want: contract.OutcomeSucceeded},
	} {
		t.Run(name, func(t *testing.T) {
			s := newEnv(t)
			s.agent.TrustedVersion = tc.trusted
			var roles []string
			s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(
				func(ctx context.Context, in activities.StageInput) (activities.StageOutput, error) {
					roles = append(roles, fmt.Sprint(in.Action.Type, "/", in.Action.Decision.Phase))
					return stageOK(ctx, in)
				})
			s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true, Reason: "Completed"}, nil)
			s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
			s.env.OnActivity(s.acts.DryRunAction, mock.Anything, mock.Anything).Return(activities.DryRunOutput{Admitted: true}, nil)
			posted := 0
			s.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(
				func(context.Context, contract.Notice) (contract.MessageRef, error) {
					posted++
					return contract.MessageRef{}, nil
				}).Maybe()

			req := request("auto", inspect, scale)
			req.Version, req.CorrelationID = tc.version, "input-1"
			s.execute(req)
			var res contract.CycleResult
			require.NoError(t, s.env.GetWorkflowResult(&res))
			assert.Equal(t, contract.OutcomeSucceeded, res.Actions[0].Outcome, "reads run in every role")
			assert.Equal(t, tc.want, res.Actions[1].Outcome)
			s.env.AssertNumberOfCalls(t, "RunJob", tc.wantRuns)
			require.Len(t, s.reports, 1)
			r := s.reports[0]
			assert.Equal(t, tc.role == policy.RoleCanary, r.Canary)
			assert.Equal(t, tc.version, r.Version)
			assert.Equal(t, "input-1", r.CorrelationID)
			require.Len(t, r.Proposed, 2)
			assert.Equal(t, "scale", r.Proposed[1].Type)
			if tc.role == policy.RoleCanary {
				assert.Equal(t, policy.PhaseShadow, res.Actions[1].Decision.Phase)
				assert.Equal(t, []string{"inspect/shadow"}, roles, "a canary's read runs with the shadow phase's read-only role")
				assert.Zero(t, posted, "a canary's dry runs post no message")
				assert.Empty(t, r.Shadow, "a canary's proposals are not open to feedback")
			}
		})
	}
}

// The effect hash is the same for both versions whatever their phase and
// rationale, and differs when what would run differs.
func TestEffectHashIgnoresPhaseAndRationale(t *testing.T) {
	s := newEnv(t)
	plan := func(phases map[policy.Class]policy.Phase, p policy.Proposal) string {
		pl, err := s.acts.Catalog.PlanWithPhases("auto", []policy.Proposal{p}, phases)
		require.NoError(t, err)
		return pl.Actions[0].EffectHash()
	}
	why := scale
	why.Rationale = "a different reason"
	base := plan(nil, scale)
	assert.Equal(t, base, plan(policy.CanaryPhases(nil), why))
	assert.NotEqual(t, base, plan(nil, policy.Proposal{Type: "scale", Params: map[string]any{"replicas": 4}}))
}

// canarySeed: agent "adv" trusting v1, with small canary gates.
func canarySeed(mut ...func(*policy.Trust)) contract.AgentSeed {
	return trustSeed(append([]func(*policy.Trust){func(t *policy.Trust) {
		t.Version = "v1"
		t.Canary = policy.CanaryGates{MinPairs: 3, MinAgreement: 0.6, Window: 5}
		t.ReofferAfter = 2
	}}, mut...)...)
}

// pairReport is one side of a pair: version v's cycle for input cid,
// proposing actions with hash h.
func (s *agentSuite) pairReport(at time.Duration, v, cid, h string, canary bool) {
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{
			WorkflowID: "cycle/adv/" + v + "-" + cid, AgentID: "adv", Outcome: "succeeded", Version: v, CorrelationID: cid, Canary: canary,
			Proposed: []contract.ProposedAction{{Type: "scale", Hash: h}}})
	}, at)
}

func TestCanaryPairing(t *testing.T) {
	s := newAgentEnv(t)
	m := time.Minute
	s.pairReport(1*m, "v1", "agree", "h1", false)
	s.pairReport(2*m, "v2", "agree", "h1", true)
	s.pairReport(3*m, "v2", "differ", "h2", true) // canary first this time
	s.pairReport(4*m, "v1", "differ", "h1", false)
	s.pairReport(5*m, "v2", "alone", "h1", true)
	s.pairReport(6*m, "v1", "other", "h1", false) // no pair either
	s.pairReport(7*m, "v3", "stray", "h1", true)  // replaces the canary
	var before, after contract.AgentState
	s.stateAt(t, 6*m+30*time.Second, &before)
	s.pairReport(2*time.Hour, "v2", "late", "h1", true) // the waiting ones expire
	s.stateAt(t, 3*time.Hour, &after)
	s.run(contract.AgentInput{Seed: new(canarySeed())}, 4*time.Hour)

	require.NotNil(t, before.Versions.Canary)
	ce := *before.Versions.Canary
	assert.Equal(t, "v1", before.Versions.Trusted)
	assert.Equal(t, "v2", ce.Version)
	assert.Equal(t, 3, ce.Cycles)
	assert.Equal(t, 2, ce.Pairs)
	assert.Equal(t, 1, ce.Agreed)
	assert.Equal(t, 1, ce.Disagreed)
	assert.Equal(t, []bool{true, false}, ce.Recent)
	assert.Contains(t, ce.LastDisagreement, "differ")
	assert.Contains(t, ce.LastDisagreement, "different rendered action")
	assert.Len(t, before.Versions.Pending, 2, "alone and other wait for their pair")
	assert.Equal(t, policy.PhaseShadow, phaseOf(before), "pairing never changes the agent's phases")
	assert.Empty(t, before.Evidence[policy.ClassWrite].ShadowProposals, "a canary's cycles are not class evidence")

	// v3 replaced v2, v2 came back and replaced v3; the old ones expired.
	require.NotNil(t, after.Versions.Canary)
	assert.Equal(t, "v2", after.Versions.Canary.Version)
	assert.Zero(t, after.Versions.Canary.Pairs, "a replaced canary starts over")
	assert.Equal(t, 1, after.Versions.Canary.Unpaired)
	var kinds []string
	for _, tr := range after.Transitions {
		if tr.Kind == contract.TransitionCanary {
			kinds = append(kinds, tr.Version)
		}
	}
	assert.Equal(t, []string{"v2", "v3", "v2"}, kinds)
	last := after.Transitions[len(after.Transitions)-1]
	require.NotNil(t, last.Canary, "the replaced canary's evidence is kept")
	assert.Equal(t, "v3", last.Canary.Version)
	assert.Empty(t, s.alerted, "no gate met: nothing offered")
}

// The canary's gate met is offered; nothing changes until a human
// promotes; the wrong version, a non-approver or an unmet gate are refused
// before history; a promotion makes it trusted and retires the old one.
func TestCanaryVersionPromotionNeedsAHuman(t *testing.T) {
	s := newAgentEnv(t)
	m := time.Minute
	var log updateLog
	s.update(1*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U1"}}) // no canary yet
	for i := range 3 {
		cid := fmt.Sprint("in-", i)
		s.pairReport(time.Duration(2+2*i)*m, "v1", cid, "h", false)
		s.pairReport(time.Duration(3+2*i)*m, "v2", cid, "h", true)
	}
	var offered contract.AgentState
	s.stateAt(t, 20*m, &offered)
	s.update(21*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v3", By: []string{"U1"}})
	s.update(22*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"mallory"}})
	s.update(23*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U1"}, Via: "cli"})
	var promoted contract.AgentState
	s.stateAt(t, 24*m, &promoted)
	s.run(contract.AgentInput{Seed: new(canarySeed())}, time.Hour)

	require.Len(t, log.rejected, 3)
	assert.Contains(t, log.rejected[0], "not agent adv's canary")
	assert.Contains(t, log.rejected[1], "version v3 is not agent adv's canary (canary: v2, trusted: v1)")
	assert.Contains(t, log.rejected[2], "mallory is not an approver")
	assert.Equal(t, "v1", offered.Versions.Trusted, "a machine never promotes")
	require.NotNil(t, offered.Versions.Offer)
	assert.Equal(t, contract.PromotionOffered, offered.Versions.Offer.Status)
	require.Len(t, s.alerted, 1)
	assert.Equal(t, contract.AlertVersionOffered, s.alerted[0].Kind)
	assert.Equal(t, "v2", s.alerted[0].Version)
	assert.Contains(t, s.alerted[0].Why, "✓ 3/3 paired cycles")

	assert.Equal(t, "v2", promoted.Versions.Trusted)
	assert.Equal(t, []string{"v1"}, promoted.Versions.Retired)
	assert.Nil(t, promoted.Versions.Canary)
	last := promoted.Transitions[len(promoted.Transitions)-1]
	assert.Equal(t, contract.TransitionVersionPromoted, last.Kind)
	assert.Equal(t, []string{"U1"}, last.By)
	assert.Contains(t, last.Why, "v1 retired")
	require.NotNil(t, last.Canary)
	assert.Equal(t, 3, last.Canary.Agreed)
}

// An override promotes an unmet canary with two approvers and a reason.
func TestCanaryOverrideNeedsTwoApproversAndAReason(t *testing.T) {
	s := newAgentEnv(t)
	m := time.Minute
	var log updateLog
	s.pairReport(1*m, "v2", "x", "h", true)
	s.update(2*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U1"}})
	s.update(3*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U1"}, Override: true})
	s.update(4*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U1"}, Override: true, Reason: "hotfix"})
	var waiting contract.AgentState
	s.stateAt(t, 5*m, &waiting)
	s.update(6*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U2"}, Override: true, Reason: "hotfix"})
	var st contract.AgentState
	s.stateAt(t, 7*m, &st)
	s.run(contract.AgentInput{Seed: new(canarySeed())}, time.Hour)
	require.Len(t, log.rejected, 2)
	assert.Contains(t, log.rejected[0], "gate not met")
	assert.Contains(t, log.rejected[1], "an override needs a reason")
	assert.Equal(t, "v1", waiting.Versions.Trusted)
	assert.Equal(t, contract.PromotionWaiting, waiting.Versions.Offer.Status)
	assert.Equal(t, "v2", st.Versions.Trusted)
	assert.Equal(t, "override", st.Transitions[len(st.Transitions)-1].Trigger)
}

// "Not yet" on an offer is recorded with who and when; the offer is not
// made again until ReofferAfter more evidence arrived, then it is.
func TestNotYetIsRecordedAndReofferedAfterNewEvidence(t *testing.T) {
	s := newAgentEnv(t)
	m := time.Minute
	var log updateLog
	s.update(1*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U1"}, Decline: true}) // nothing offered
	for i := range 3 {
		cid := fmt.Sprint("in-", i)
		s.pairReport(time.Duration(2+2*i)*m, "v1", cid, "h", false)
		s.pairReport(time.Duration(3+2*i)*m, "v2", cid, "h", true)
	}
	s.update(10*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"mallory"}, Decline: true})
	s.update(11*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U2"}, Decline: true, Via: "slack"})
	s.update(12*m, &log, contract.UpdatePromote, contract.PromoteRequest{Version: "v2", By: []string{"U2"}, Decline: true}) // harmless
	s.pairReport(13*m, "v1", "in-3", "h", false)
	s.pairReport(14*m, "v2", "in-3", "h", true)
	var declined contract.AgentState
	s.stateAt(t, 15*m, &declined)
	s.pairReport(16*m, "v1", "in-4", "h", false)
	s.pairReport(17*m, "v2", "in-4", "h", true)
	var again contract.AgentState
	s.stateAt(t, 18*m, &again)
	s.run(contract.AgentInput{Seed: new(canarySeed())}, time.Hour)

	require.Len(t, log.rejected, 2)
	assert.Contains(t, log.rejected[0], "no promotion of version v2 is offered")
	assert.Contains(t, log.rejected[1], "mallory is not an approver")
	assert.Equal(t, contract.PromotionDeclined, declined.Versions.Offer.Status)
	assert.Equal(t, []string{"U2"}, declined.Versions.Offer.DeclinedBy)
	var declines []contract.AgentTransition
	for _, tr := range declined.Transitions {
		if tr.Kind == contract.TransitionDeclined {
			declines = append(declines, tr)
		}
	}
	require.Len(t, declines, 1, "a second Not yet changes nothing")
	assert.Equal(t, []string{"U2"}, declines[0].By)
	assert.Equal(t, "v2", declines[0].Version)
	assert.Contains(t, declines[0].Why, "via slack")
	assert.Equal(t, "v1", declined.Versions.Trusted)

	require.Len(t, s.alerted, 2, "offered, declined, offered again after 2 more pairs")
	assert.Equal(t, contract.PromotionOffered, again.Versions.Offer.Status)
	assert.Equal(t, "v1", again.Versions.Trusted, "a machine never promotes")
}

// "Not yet" on a class's offer works the same way.
func TestNotYetOnAClassOffer(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	at := time.Minute
	shadowAgree := func(id string) {
		s.env.RegisterDelayedCallback(func() {
			s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/" + id, AgentID: "adv", Outcome: "succeeded",
				Details: []contract.ActionReport{write(policy.PhaseShadow, policy.ModeWouldDo, nil)},
				Shadow:  []contract.ShadowProposal{{WorkflowID: "cycle/adv/" + id, Class: policy.ClassWrite, Hash: "h", Until: s.env.Now().Add(time.Hour)}}})
		}, at)
		s.update(at+30*time.Second, &log, contract.UpdateFeedback, contract.FeedbackDecision{CycleWorkflowID: "cycle/adv/" + id,
			Decision: contract.Decision{ActionHash: "h", Kind: contract.DecisionAgree, Approver: "U1", Via: "slack"}})
		at += time.Minute
	}
	for i := range 3 {
		shadowAgree(fmt.Sprint("c", i))
	}
	s.update(at, &log, contract.UpdatePromote, contract.PromoteRequest{Class: policy.ClassWrite, By: []string{"U3"}, Decline: true})
	at += time.Minute
	var declined contract.AgentState
	s.stateAt(t, at, &declined)
	shadowAgree("c3") // two more pieces: one proposal, one Agree
	var again contract.AgentState
	s.stateAt(t, at+time.Minute, &again)
	s.run(contract.AgentInput{Seed: new(canarySeed())}, time.Hour)
	require.Empty(t, log.rejected)
	assert.Equal(t, contract.PromotionDeclined, declined.Promotions[policy.ClassWrite].Status)
	last := declined.Transitions[len(declined.Transitions)-1]
	assert.Equal(t, contract.TransitionDeclined, last.Kind)
	assert.Equal(t, policy.ClassWrite, last.Class)
	require.NotNil(t, last.Evidence)
	assert.Equal(t, 3, last.Evidence.Feedback.Agree)
	assert.Equal(t, contract.PromotionOffered, again.Promotions[policy.ClassWrite].Status)
	assert.Len(t, s.alerted, 2)
	assert.Equal(t, policy.PhaseShadow, phaseOf(again), "a machine never promotes")
}

// A canary's violation counts against the canary and never demotes the
// trusted version's phases.
func TestCanaryViolationDoesNotDemoteTheAgent(t *testing.T) {
	s := newAgentEnv(t)
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/x", AgentID: "adv", Outcome: "refused",
			Violation: true, Reason: "action not allowed", Version: "v2", Canary: true})
	}, time.Minute)
	var st contract.AgentState
	s.stateAt(t, 2*time.Minute, &st)
	seed := canarySeed(func(t *policy.Trust) { t.Start = policy.PhaseAdvisory })
	s.run(contract.AgentInput{Seed: &seed}, time.Hour)
	assert.Equal(t, policy.PhaseAdvisory, phaseOf(st))
	require.NotNil(t, st.Versions.Canary)
	assert.Equal(t, 1, st.Versions.Canary.Violations)
	assert.False(t, contract.CheckCanaryGate(*st.Versions.Canary, seed.Trust.Canary).Met)
}
