package workflows_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// trustSeed: agent "adv" (approvers U1–U3) whose catalog allows writes up
// to autonomous but which starts in shadow and earns the rest; small gates
// keep the tests short.
func trustSeed(mut ...func(*policy.Trust)) contract.AgentSeed {
	s := advSeed
	s.Phases = map[policy.Class]policy.Phase{policy.ClassRead: policy.PhaseAutonomous, policy.ClassWrite: policy.PhaseAutonomous}
	t := policy.Trust{Start: policy.PhaseShadow, Gates: policy.Gates{MinFeedback: 3, MinApprovals: 3, MinRuns: 3, MinDays: 1}}
	for _, m := range mut {
		m(&t)
	}
	s.Trust = t.WithDefaults()
	return s
}

// alerts are what the agent told its approvers.
func (s *agentSuite) alerts() *[]contract.AgentAlert { return &s.alerted }

// reportAt signals a cycle report at a moment.
func (s *agentSuite) reportAt(at time.Duration, id string, details ...contract.ActionReport) {
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/" + id, AgentID: "adv", Outcome: "succeeded", Details: details})
	}, at)
}

func write(phase policy.Phase, mode policy.Mode, mut func(*contract.ActionReport)) contract.ActionReport {
	d := contract.ActionReport{Type: "scale", Class: policy.ClassWrite, Phase: phase, Mode: mode, Outcome: contract.OutcomeSucceeded}
	if mut != nil {
		mut(&d)
	}
	return d
}

func phaseOf(st contract.AgentState) policy.Phase { return st.Phases[policy.ClassWrite] }

// A met gate is offered to humans and nothing changes until they promote
// (a machine never promotes); one short of the gate, nothing is offered.
func TestGateMetIsOfferedNeverApplied(t *testing.T) {
	for name, agrees := range map[string]int{"met": 3, "one short": 2} {
		t.Run(name, func(t *testing.T) {
			s := newAgentEnv(t)
			alerts := s.alerts()
			var log updateLog
			for i := range agrees {
				id := fmt.Sprint("c", i)
				s.env.RegisterDelayedCallback(func() {
					s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/" + id, AgentID: "adv", Outcome: "succeeded",
						Details: []contract.ActionReport{write(policy.PhaseShadow, policy.ModeWouldDo, nil)},
						Shadow:  []contract.ShadowProposal{{WorkflowID: "cycle/adv/" + id, Class: policy.ClassWrite, Hash: "h", Until: s.env.Now().Add(time.Hour)}}})
				}, time.Duration(2*i+1)*time.Minute)
				s.update(time.Duration(2*i+2)*time.Minute, &log, contract.UpdateFeedback, contract.FeedbackDecision{CycleWorkflowID: "cycle/adv/" + id,
					Decision: contract.Decision{ActionHash: "h", Kind: contract.DecisionAgree, Approver: "U1", Via: "slack"}})
			}
			var st contract.AgentState
			s.stateAt(t, 30*time.Minute, &st)
			s.run(contract.AgentInput{Seed: new(trustSeed())}, time.Hour)
			require.Empty(t, log.rejected)
			assert.Equal(t, policy.PhaseShadow, phaseOf(st), "a machine never promotes")
			ev := st.Evidence[policy.ClassWrite]
			assert.Equal(t, agrees, ev.ShadowProposals)
			assert.Equal(t, contract.FeedbackCount{Agree: agrees}, ev.Feedback)
			if agrees < 3 {
				assert.Empty(t, st.Promotions)
				assert.Empty(t, *alerts)
				return
			}
			require.Contains(t, st.Promotions, policy.ClassWrite)
			p := st.Promotions[policy.ClassWrite]
			assert.Equal(t, contract.PromotionOffered, p.Status)
			assert.Equal(t, policy.PhaseAdvisory, p.To)
			require.Len(t, *alerts, 1)
			assert.Equal(t, contract.AlertPromotionOffered, (*alerts)[0].Kind)
			assert.Contains(t, (*alerts)[0].Why, "3/3 shadow proposals with feedback")
		})
	}
}

// Promotion is a human's Update: refused with the numbers while the gate
// is not met (unless two approvers override with a reason), one approver
// for advisory and supervised, two distinct ones for autonomous.
func TestPromotionNeedsTheGateOrAnOverrideAndEnoughApprovers(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	at := func(m int) time.Duration { return time.Duration(m) * time.Minute }
	w := policy.ClassWrite
	s.update(at(1), &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U1"}})                                    // gate not met
	s.update(at(2), &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U9"}, Override: true, Reason: "trusted"}) // not an approver
	s.update(at(3), &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U1"}, Override: true})                    // no reason
	s.update(at(4), &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U1"}, Override: true, Reason: "pilot"})   // waits for a second
	s.update(at(5), &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U2"}, Override: true, Reason: "pilot"})   // shadow → advisory
	// Advisory → supervised on evidence: three approvals.
	for i := range 3 {
		s.reportAt(at(10+i), fmt.Sprint("a", i), write(policy.PhaseAdvisory, policy.ModeApprove, func(d *contract.ActionReport) { d.Approved, d.Ran = true, true }))
	}
	s.update(at(20), &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U3"}}) // advisory → supervised
	// Supervised → autonomous: three runs and a day in the phase; two approvers.
	for i := range 3 {
		s.reportAt(at(30+i), fmt.Sprint("s", i), write(policy.PhaseSupervised, policy.ModeVeto, func(d *contract.ActionReport) { d.Ran = true }))
	}
	s.update(at(40), &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U1"}})                   // under a day
	s.update(25*time.Hour, &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U1"}})             // waits
	s.update(25*time.Hour+time.Minute, &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U1"}}) // same approver again: still waits
	var before contract.AgentState
	s.stateAt(t, 25*time.Hour+2*time.Minute, &before)
	s.update(25*time.Hour+3*time.Minute, &log, contract.UpdatePromote, contract.PromoteRequest{Class: w, By: []string{"U2"}})
	var st contract.AgentState
	s.stateAt(t, 26*time.Hour, &st)
	s.run(contract.AgentInput{Seed: new(trustSeed())}, 27*time.Hour)

	require.Len(t, log.rejected, 4, "%q", log.rejected)
	assert.Contains(t, log.rejected[0], "gate not met")
	assert.Contains(t, log.rejected[0], "0/3 shadow proposals with feedback")
	assert.Contains(t, log.rejected[1], "U9 is not an approver")
	assert.Contains(t, log.rejected[2], "an override needs a reason")
	assert.Contains(t, log.rejected[3], "0/1 days in the phase")
	var statuses []string
	for _, v := range log.completed {
		statuses = append(statuses, v.(contract.Promotion).Status)
	}
	assert.Equal(t, []string{"waiting", "promoted", "promoted", "waiting", "waiting", "promoted"}, statuses)
	assert.Equal(t, policy.PhaseSupervised, phaseOf(before), "autonomous needs two distinct approvers")
	assert.Equal(t, policy.PhaseAutonomous, phaseOf(st))
	var promoted []contract.AgentTransition
	for _, tr := range st.Transitions {
		if tr.Kind == contract.TransitionPromoted {
			promoted = append(promoted, tr)
		}
	}
	require.Len(t, promoted, 3)
	assert.Equal(t, "override", promoted[0].Trigger, "an override is marked in the record")
	assert.Contains(t, promoted[0].Why, "pilot")
	assert.Equal(t, []string{"U1", "U2"}, promoted[2].By)
	assert.Equal(t, 3, promoted[2].Evidence.Runs, "the evidence it was promoted on is kept")
}

// Each trigger demotes at once, with an alert and the evidence snapshot:
// three denials in a row, too many failed runs, a rollback (one phase
// down), a violation (every class straight to shadow); a trigger switched
// off in the catalog does not.
func TestDemotionTriggers(t *testing.T) {
	sup := policy.PhaseSupervised
	denied := func(d *contract.ActionReport) { d.Denied, d.Outcome = true, contract.OutcomeDenied }
	failed := func(d *contract.ActionReport) { d.Ran, d.Outcome = true, contract.OutcomeFailed }
	ok := func(d *contract.ActionReport) { d.Ran = true }
	cases := map[string]struct {
		reports   [][]contract.ActionReport
		violation bool
		off       []string
		want      policy.Phase
		trigger   string
	}{
		"three denials in a row": {reports: [][]contract.ActionReport{{write(sup, policy.ModeApprove, denied)}, {write(sup, policy.ModeApprove, denied)}, {write(sup, policy.ModeApprove, denied)}},
			want: policy.PhaseAdvisory, trigger: policy.TriggerDenials},
		"two denials, then a run": {reports: [][]contract.ActionReport{{write(sup, policy.ModeApprove, denied)}, {write(sup, policy.ModeApprove, denied)}, {write(sup, policy.ModeVeto, ok)}, {write(sup, policy.ModeApprove, denied)}},
			want: sup},
		"three of 20 runs failed": {reports: [][]contract.ActionReport{{write(sup, policy.ModeVeto, failed)}, {write(sup, policy.ModeVeto, ok)}, {write(sup, policy.ModeVeto, failed)}, {write(sup, policy.ModeVeto, failed)}},
			want: policy.PhaseAdvisory, trigger: policy.TriggerFailures},
		"two failed: not above 10 % of 20": {reports: [][]contract.ActionReport{{write(sup, policy.ModeVeto, failed)}, {write(sup, policy.ModeVeto, failed)}},
			want: sup},
		"a rollback": {reports: [][]contract.ActionReport{{write(sup, policy.ModeVeto, func(d *contract.ActionReport) { failed(d); d.RolledBack = true })}},
			want: policy.PhaseAdvisory, trigger: policy.TriggerRollback},
		"a violation":              {violation: true, want: policy.PhaseShadow, trigger: policy.TriggerViolation},
		"a violation, trigger off": {violation: true, off: []string{policy.TriggerViolation}, want: sup},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := newAgentEnv(t)
			alerts := s.alerts()
			for i, ds := range tc.reports {
				s.reportAt(time.Duration(i+1)*time.Minute, fmt.Sprint("c", i), ds...)
			}
			if tc.violation {
				s.env.RegisterDelayedCallback(func() {
					s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/v", AgentID: "adv", Outcome: "refused",
						Violation: true, Reason: `unknown action type "drop"`})
				}, time.Minute)
			}
			var st contract.AgentState
			s.stateAt(t, 30*time.Minute, &st)
			seed := trustSeed(func(tr *policy.Trust) { tr.Start, tr.Demotion.Disabled = sup, tc.off })
			s.run(contract.AgentInput{Seed: &seed}, time.Hour)
			assert.Equal(t, tc.want, phaseOf(st))
			if tc.trigger == "" {
				assert.Empty(t, *alerts)
				return
			}
			last := st.Transitions[len(st.Transitions)-1]
			assert.Equal(t, contract.TransitionDemoted, last.Kind)
			assert.Equal(t, tc.trigger, last.Trigger)
			require.NotNil(t, last.Evidence, "the evidence that demoted it is kept")
			assert.Equal(t, sup, last.Evidence.Phase)
			require.NotEmpty(t, *alerts)
			a := (*alerts)[len(*alerts)-1]
			assert.Equal(t, contract.TransitionDemoted, a.Kind)
			assert.Equal(t, tc.want, a.To)
			assert.Equal(t, []string{"U1", "U2", "U3"}, a.Approvers)
			if tc.violation {
				assert.Equal(t, policy.PhaseShadow, st.Phases[policy.ClassRead], "every class goes to shadow")
			}
			assert.Equal(t, tc.want, st.Evidence[policy.ClassWrite].Phase, "evidence starts over in the new phase")
		})
	}
}

// Disagreement keeps a class in shadow and restarts its promotion clock:
// more than 20 % of the last 20 proposals with feedback.
func TestDisagreementRestartsThePromotionClock(t *testing.T) {
	s := newAgentEnv(t)
	alerts := s.alerts()
	var log updateLog
	var props []contract.ShadowProposal
	for i := range 10 {
		props = append(props, contract.ShadowProposal{WorkflowID: "cycle/adv/c", Index: i, Class: policy.ClassWrite, Hash: "h", Until: s.env.Now().Add(time.Hour)})
	}
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c", AgentID: "adv", Outcome: "succeeded", Shadow: props})
	}, time.Minute)
	for i := range 6 { // 1 agree, then disagree: the 5th disagreement is 5/20 > 20 %
		kind := contract.DecisionDisagree
		if i == 0 {
			kind = contract.DecisionAgree
		}
		s.update(time.Duration(i+2)*time.Minute, &log, contract.UpdateFeedback, contract.FeedbackDecision{CycleWorkflowID: "cycle/adv/c",
			Decision: contract.Decision{ActionIndex: i, ActionHash: "h", Kind: kind, Approver: "U1", Via: "slack"}})
	}
	var mid, st contract.AgentState
	s.stateAt(t, 5*time.Minute+30*time.Second, &mid)
	s.stateAt(t, 30*time.Minute, &st)
	s.run(contract.AgentInput{Seed: new(trustSeed(func(tr *policy.Trust) { tr.Gates.MinFeedback = 30 }))}, time.Hour)
	require.Empty(t, log.rejected)
	assert.Equal(t, contract.FeedbackCount{Agree: 1, Disagree: 3}, mid.Evidence[policy.ClassWrite].Feedback, "4/20 disagree is 20 %, not above")
	assert.Equal(t, policy.PhaseShadow, phaseOf(st))
	assert.Equal(t, contract.ClassEvidence{Phase: policy.PhaseShadow, Since: st.Evidence[policy.ClassWrite].Since}, st.Evidence[policy.ClassWrite], "the clock restarted")
	last := st.Transitions[len(st.Transitions)-1]
	assert.Equal(t, contract.TransitionClockReset, last.Kind)
	assert.Equal(t, 5, last.Evidence.Feedback.Disagree)
	require.Len(t, *alerts, 1)
	assert.Equal(t, contract.TransitionClockReset, (*alerts)[0].Kind)
}
