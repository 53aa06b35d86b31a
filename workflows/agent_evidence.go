package workflows

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Earned trust (version 2 of "agent-memo"): the agent keeps evidence per
// action class from what its cycles report and what humans say about its
// shadow proposals; triggers demote a class at once (a violation: every
// class to shadow), and a met promotion gate is offered to humans — the
// machine never promotes (UpdatePromote, agent_promote.go).

// trust returns the agent's trust settings, defaults filled in (states
// from before trust had none).
func (ag *agent) trust() policy.Trust { return ag.st.Trust.WithDefaults() }

// syncEvidence starts a class's evidence over whenever its phase is not
// the one its evidence was gathered in: the promotion clock restarts.
func (ag *agent) syncEvidence(at time.Time) {
	if !ag.earned {
		return
	}
	if ag.st.Evidence == nil {
		ag.st.Evidence = map[policy.Class]contract.ClassEvidence{}
	}
	for cl, ph := range ag.st.Phases {
		if ev, ok := ag.st.Evidence[cl]; !ok || ev.Phase != ph {
			ag.st.Evidence[cl] = contract.ClassEvidence{Phase: ph, Since: at}
		}
	}
}

// absorb adds a cycle's report to the evidence, then demotes what its
// triggers say and offers what its gates allow.
func (ag *agent) absorb(ctx workflow.Context, r contract.CycleReport) {
	if !ag.earned || ag.st.Status != contract.AgentActive {
		return
	}
	ag.syncEvidence(workflow.Now(ctx))
	window := ag.trust().Demotion.Window
	touched := map[policy.Class]bool{}
	for _, d := range r.Details {
		ev, ok := ag.st.Evidence[d.Class]
		if !ok || ev.Phase != d.Phase {
			// Planned before the class changed phase: not evidence for
			// the phase it is in now.
			continue
		}
		touched[d.Class] = true
		switch {
		case d.Mode == policy.ModeWouldDo:
			ev.ShadowProposals++
		case d.Approved:
			ev.Approved++
			ev.ConsecutiveDenials = 0
		case d.Denied:
			ev.Denied++
			ev.ConsecutiveDenials++
		case d.Stopped:
			ev.Vetoed++
			ev.ConsecutiveDenials++
		}
		if d.Ran {
			ev.Runs++
			failed := d.Outcome == contract.OutcomeFailed
			if failed {
				ev.Failed++
			}
			if d.Mode != policy.ModeApprove {
				ev.ConsecutiveDenials = 0 // ran without a human saying no
			}
			ev.RecentRuns = lastN(append(ev.RecentRuns, failed), window)
		}
		if d.RolledBack {
			ev.Rollbacks++
		}
		ag.st.Evidence[d.Class] = ev
	}
	if r.Violation {
		for cl, ev := range ag.st.Evidence {
			ev.Violations++
			ag.st.Evidence[cl] = ev
		}
		if ag.trust().Demotion.On(policy.TriggerViolation) {
			ag.demoteAll(ctx, policy.TriggerViolation, "violation: "+r.Reason)
			return
		}
	}
	for _, cl := range slices.Sorted(maps.Keys(touched)) {
		ag.checkDemotion(ctx, cl)
	}
	for _, cl := range slices.Sorted(maps.Keys(touched)) {
		ag.offerPromotion(ctx, cl)
	}
}

// absorbFeedback adds one Agree/Disagree on a shadow proposal of class.
func (ag *agent) absorbFeedback(ctx workflow.Context, class policy.Class, disagree bool) {
	if !ag.earned || ag.st.Status != contract.AgentActive {
		return
	}
	ag.syncEvidence(workflow.Now(ctx))
	ev, ok := ag.st.Evidence[class]
	if !ok || ev.Phase != policy.PhaseShadow {
		return
	}
	if disagree {
		ev.Feedback.Disagree++
	} else {
		ev.Feedback.Agree++
	}
	d := ag.trust().Demotion
	ev.RecentFeedback = lastN(append(ev.RecentFeedback, disagree), d.Window)
	ag.st.Evidence[class] = ev
	if n := count(ev.RecentFeedback); d.On(policy.TriggerDisagreement) && float64(n) > d.DisagreeRate*float64(d.Window) {
		// Stays in shadow; what it showed so far no longer counts.
		snapshot := ev
		ag.st.Evidence[class] = contract.ClassEvidence{Phase: policy.PhaseShadow, Since: workflow.Now(ctx)}
		delete(ag.st.Promotions, class)
		why := fmt.Sprintf("%d of the last %d shadow proposals with feedback were disagreed with (more than %.0f %%): the promotion clock restarts",
			n, len(ev.RecentFeedback), 100*d.DisagreeRate)
		ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionClockReset, To: ag.st.Status, Class: class,
			Trigger: policy.TriggerDisagreement, Why: why, Evidence: &snapshot})
		ag.alert(ctx, contract.AgentAlert{Kind: contract.TransitionClockReset, Class: class, From: policy.PhaseShadow, To: policy.PhaseShadow, Why: why})
		return
	}
	ag.offerPromotion(ctx, class)
}

// checkDemotion demotes a class one phase if a trigger fired.
func (ag *agent) checkDemotion(ctx workflow.Context, class policy.Class) {
	ev := ag.st.Evidence[class]
	phase := ag.st.Phases[class]
	if phase == policy.PhaseShadow {
		return
	}
	d := ag.trust().Demotion
	var trigger, why string
	switch {
	case d.On(policy.TriggerRollback) && ev.Rollbacks > 0:
		trigger, why = policy.TriggerRollback, "a failed write was rolled back"
	case d.On(policy.TriggerDenials) && ev.ConsecutiveDenials >= d.ConsecutiveDenials:
		trigger, why = policy.TriggerDenials, fmt.Sprintf("%d denials in a row", ev.ConsecutiveDenials)
	case d.On(policy.TriggerFailures) && float64(count(ev.RecentRuns)) > d.FailureRate*float64(d.Window):
		trigger, why = policy.TriggerFailures, fmt.Sprintf("%d of the last %d runs failed (more than %.0f %% of %d)",
			count(ev.RecentRuns), len(ev.RecentRuns), 100*d.FailureRate, d.Window)
	default:
		return
	}
	ag.demote(ctx, class, phase.Down(), trigger, why)
}

// demoteAll sends every class straight to shadow.
func (ag *agent) demoteAll(ctx workflow.Context, trigger, why string) {
	for _, cl := range slices.Sorted(maps.Keys(ag.st.Phases)) {
		if ag.st.Phases[cl] != policy.PhaseShadow {
			ag.demote(ctx, cl, policy.PhaseShadow, trigger, why)
		}
	}
}

// demote lowers a class's phase: new cycles plan with it at once (cycles
// already running keep the phase they were planned with).
func (ag *agent) demote(ctx workflow.Context, class policy.Class, to policy.Phase, trigger, why string) {
	from := ag.st.Phases[class]
	snapshot := ag.st.Evidence[class]
	phases := maps.Clone(ag.st.Phases)
	phases[class] = to
	ag.st.Phases = phases
	delete(ag.st.Promotions, class)
	why = fmt.Sprintf("%s demoted %s → %s: %s", class, from, to, why)
	ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionDemoted, To: ag.st.Status, Class: class,
		Trigger: trigger, Why: why, Evidence: &snapshot})
	ag.alert(ctx, contract.AgentAlert{Kind: contract.TransitionDemoted, Class: class, From: from, To: to, Why: why, Trigger: trigger})
}

// offerPromotion offers humans a promotion whose gate is met (once per
// phase, again after a "Not yet" once new evidence arrived): the machine
// never promotes.
func (ag *agent) offerPromotion(ctx workflow.Context, class policy.Class) {
	if p, pending := ag.st.Promotions[class]; pending && (p.Status != contract.PromotionDeclined ||
		ag.st.Evidence[class].Pieces() < p.EvidenceAt+ag.trust().ReofferAfter) {
		return // waiting for humans, or declined and no new evidence yet
	}
	gate := ag.gate(ctx, class)
	if !gate.Met {
		return
	}
	p := contract.Promotion{Class: class, From: gate.From, To: gate.To, Status: contract.PromotionOffered,
		Needed: contract.PromotionApprovers(gate.To, false), At: workflow.Now(ctx), Gate: gate}
	if ag.st.Promotions == nil {
		ag.st.Promotions = map[policy.Class]contract.Promotion{}
	}
	ag.st.Promotions[class] = p
	ag.alert(ctx, contract.AgentAlert{Kind: contract.AlertPromotionOffered, Class: class, From: gate.From, To: gate.To,
		Why: gate.String(), Needed: p.Needed})
}

// gate checks a class's promotion gate now.
func (ag *agent) gate(ctx workflow.Context, class policy.Class) contract.Gate {
	cap := ag.st.Caps[class]
	return contract.CheckGate(class, ag.st.Evidence[class], ag.st.Phases[class], cap, ag.trust().Gates, workflow.Now(ctx))
}

// alertOptions: a lost alert must not stop the agent's workflow.
var alertOptions = workflow.LocalActivityOptions{Summary: "post agent alert", StartToCloseTimeout: 15 * time.Second, ScheduleToCloseTimeout: time.Minute}

// alert tells the agent's approvers (Slack, or the worker's log) about a
// promotion offer or a demotion.
func (ag *agent) alert(ctx workflow.Context, a contract.AgentAlert) {
	a.AgentID, a.Approvers, a.At = ag.st.AgentID, ag.st.Approvers, workflow.Now(ctx)
	if ev, ok := ag.st.Evidence[a.Class]; ok {
		a.Evidence = ev
	}
	lctx := workflow.WithLocalActivityOptions(ctx, alertOptions)
	if err := workflow.ExecuteLocalActivity(lctx, contract.ActivityPostAgentAlert, a).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("agent alert", "kind", a.Kind, "class", a.Class, "error", err)
	}
}

func lastN(b []bool, n int) []bool {
	if len(b) > n {
		return slices.Clone(b[len(b)-n:])
	}
	return b
}

func count(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}
