package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// validatePromote refuses, before anything reaches history: an agent that
// is not active, an unknown class or one at its catalog cap, anyone who is
// not the agent's approver, and — unless overridden with a reason — a gate
// that is not met, naming the numbers.
func (ag *agent) validatePromote(ctx workflow.Context, r contract.PromoteRequest) error {
	if r.Version != "" || r.Decline {
		return ag.validateVersionOrDecline(r)
	}
	if !ag.earned {
		return errors.New("this agent's workflow predates earned trust: promote after it continues as new")
	}
	if ag.st.Status != contract.AgentActive {
		return fmt.Errorf("agent %s is %s: resume it first", ag.st.AgentID, ag.st.Status)
	}
	phase, ok := ag.st.Phases[r.Class]
	if !ok {
		return fmt.Errorf("agent %s has no %q actions", ag.st.AgentID, r.Class)
	}
	if !phase.Below(ag.st.Caps[r.Class]) {
		return fmt.Errorf("%s actions of agent %s are at the catalog's cap (%s)", r.Class, ag.st.AgentID, phase)
	}
	if len(r.By) == 0 {
		return errors.New("who promotes (by) is required")
	}
	for _, by := range r.By {
		if !slices.Contains(ag.st.Approvers, by) {
			return fmt.Errorf("%s is not an approver of agent %s", by, ag.st.AgentID)
		}
	}
	if r.Override {
		if strings.TrimSpace(r.Reason) == "" {
			return errors.New("an override needs a reason")
		}
		return nil
	}
	if gate := ag.gate(ctx, r.Class); !gate.Met {
		return fmt.Errorf("gate not met: %s", gate)
	}
	return nil
}

// promote adds the askers to the class's promotion and promotes once
// enough distinct approvers asked (two for autonomous or an override).
func (ag *agent) promote(ctx workflow.Context, r contract.PromoteRequest) (contract.Promotion, error) {
	ag.handled++
	switch {
	case r.Decline:
		return ag.decline(ctx, r)
	case r.Version != "":
		return ag.promoteVersion(ctx, r)
	}
	gate := ag.gate(ctx, r.Class)
	p, ok := ag.st.Promotions[r.Class]
	if !ok || p.From != gate.From || p.Status == contract.PromotionDeclined {
		p = contract.Promotion{Class: r.Class, From: gate.From, To: gate.To, Status: contract.PromotionWaiting}
	}
	p.Gate = gate
	if r.Override && !p.Override {
		p.Override, p.Reason = true, r.Reason
	}
	for _, by := range r.By {
		if !slices.Contains(p.By, by) {
			p.By = append(p.By, by)
		}
	}
	p.Needed = contract.PromotionApprovers(p.To, p.Override)
	p.At = workflow.Now(ctx)
	if ag.st.Promotions == nil {
		ag.st.Promotions = map[policy.Class]contract.Promotion{}
	}
	if len(p.By) < p.Needed {
		p.Status = contract.PromotionWaiting
		ag.st.Promotions[r.Class] = p
		return p, nil
	}
	p.Status = contract.PromotionPromoted
	delete(ag.st.Promotions, r.Class)
	snapshot := ag.st.Evidence[r.Class]
	phases := maps.Clone(ag.st.Phases)
	phases[r.Class] = p.To
	ag.st.Phases = phases
	why := fmt.Sprintf("%s promoted %s → %s", r.Class, p.From, p.To)
	trigger := ""
	if p.Override {
		why += " by override, gate not met: " + p.Reason
		trigger = "override"
	}
	ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionPromoted, To: ag.st.Status, Class: r.Class,
		Trigger: trigger, By: slices.Clone(p.By), Why: viaWhy(why, r.Via), Evidence: &snapshot})
	return p, nil
}
