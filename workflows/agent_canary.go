package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
)

// Canary versions and "Not yet" (version 1 of "agent-canary"). The agent
// trusts one version (the catalog's trust.version, or the last one humans
// promoted) and has at most one canary: the latest other version that
// reported a cycle. A newer canary replaces the previous one — the
// runtime rolled a newer build, so the old trial is moot — and the
// replaced canary's evidence is kept in the transition. A retired trusted
// version that comes back is a canary like any unknown version. Canary
// cycles are planned in shadow (policy.RoleOf); here they are paired with
// the trusted version's cycles of the same correlation_id, and agreement
// over a window is the canary's evidence. Its violations count against
// the canary and never demote the trusted version's phases.

// adoptCatalogVersion takes the catalog's trusted version when the agent
// trusts none yet (a new agent, or one from before versions).
func (ag *agent) adoptCatalogVersion(ctx workflow.Context) {
	if !ag.canary || ag.st.Versions.Trusted != "" || ag.st.Trust.Version == "" {
		return
	}
	ag.st.Versions.Trusted, ag.st.Versions.Since = ag.st.Trust.Version, workflow.Now(ctx)
}

// absorbVersion takes a cycle report's version and pairing. It reports
// whether the cycle was a canary's: its evidence is pairing, not the
// agent's classes.
func (ag *agent) absorbVersion(ctx workflow.Context, r contract.CycleReport) bool {
	if !ag.canary || ag.st.Status != contract.AgentActive {
		return false
	}
	vs := &ag.st.Versions
	now := workflow.Now(ctx)
	if r.Canary && r.Version != "" && r.Version != vs.Trusted && (vs.Canary == nil || vs.Canary.Version != r.Version) {
		var old *contract.CanaryEvidence
		why := fmt.Sprintf("version %s is the canary: its writes run in shadow until humans promote it", r.Version)
		if vs.Canary != nil {
			snapshot := *vs.Canary
			old = &snapshot
			why += fmt.Sprintf(" (replaces canary %s)", old.Version)
		}
		vs.Canary, vs.Offer = &contract.CanaryEvidence{Version: r.Version, Since: now}, nil
		ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionCanary, To: ag.st.Status, Version: r.Version, Why: why, Canary: old})
	}
	isCanary := r.Canary && vs.Canary != nil && r.Version == vs.Canary.Version
	if isCanary {
		vs.Canary.Cycles++
		if r.Violation {
			vs.Canary.Violations++
		}
	}
	if r.CorrelationID != "" && (isCanary || !r.Canary) && (len(r.Proposed) > 0 || r.Violation) {
		ag.pair(ctx, contract.PairHalf{CorrelationID: r.CorrelationID, WorkflowID: r.WorkflowID, Version: r.Version,
			Canary: isCanary, Proposed: r.Proposed, At: now})
	}
	if isCanary {
		ag.offerVersion(ctx)
	}
	return r.Canary
}

// pair matches a cycle with the other version's cycle of the same
// correlation_id, or keeps it waiting (bounded in number and time).
func (ag *agent) pair(ctx workflow.Context, h contract.PairHalf) {
	vs := &ag.st.Versions
	now := workflow.Now(ctx)
	// A half that never found its pair counts against the canary if it
	// was the trusted version's or the current canary's (not a replaced
	// canary's).
	unpaired := 0
	lost := func(p contract.PairHalf) {
		if vs.Canary != nil && (!p.Canary || ofCanary(p, vs.Canary)) {
			unpaired++
		}
	}
	vs.Pending = slices.DeleteFunc(vs.Pending, func(p contract.PairHalf) bool {
		old := now.Sub(p.At) > contract.AgentPairWait
		if old {
			lost(p)
		}
		return old
	})
	defer func() {
		if vs.Canary != nil {
			vs.Canary.Unpaired += unpaired
		}
	}()
	i := slices.IndexFunc(vs.Pending, func(p contract.PairHalf) bool {
		return p.CorrelationID == h.CorrelationID && p.Canary != h.Canary
	})
	if i < 0 {
		if !slices.ContainsFunc(vs.Pending, func(p contract.PairHalf) bool { return p.CorrelationID == h.CorrelationID && p.Canary == h.Canary }) {
			vs.Pending = append(vs.Pending, h)
		}
		if n := len(vs.Pending) - contract.AgentPendingPairsKept; n > 0 {
			for _, p := range vs.Pending[:n] {
				lost(p)
			}
			vs.Pending = slices.Delete(vs.Pending, 0, n)
		}
		return
	}
	other := vs.Pending[i]
	vs.Pending = slices.Delete(vs.Pending, i, i+1)
	ce := vs.Canary
	if ce == nil {
		return
	}
	if other.Canary && !ofCanary(other, ce) {
		return // a replaced canary's cycle
	}
	trusted, canary := other, h
	if h.Canary {
		trusted, canary = h, other
	}
	same, diff := contract.SameProposals(trusted.Proposed, canary.Proposed)
	ce.Pairs++
	if same {
		ce.Agreed++
	} else {
		ce.Disagreed++
		ce.LastDisagreement = fmt.Sprintf("%s (%s vs %s): %s", h.CorrelationID, trusted.WorkflowID, canary.WorkflowID, diff)
	}
	ce.Recent = lastN(append(ce.Recent, same), ag.trust().Canary.Window)
	workflow.GetLogger(ctx).Info("canary pair", "agent", ag.st.AgentID, "canary", ce.Version, "correlation_id", h.CorrelationID, "same", same)
}

// offerVersion offers humans the canary's promotion once its gate is met
// (again only after ReofferAfter more pairs if they said "Not yet").
func (ag *agent) offerVersion(ctx workflow.Context) {
	vs := &ag.st.Versions
	ce := vs.Canary
	if ce == nil {
		return
	}
	if p := vs.Offer; p != nil && (p.Status != contract.PromotionDeclined || ce.Pairs < p.EvidenceAt+ag.trust().ReofferAfter) {
		return
	}
	gate := contract.CheckCanaryGate(*ce, ag.trust().Canary)
	if !gate.Met {
		return
	}
	vs.Offer = &contract.Promotion{Version: ce.Version, Status: contract.PromotionOffered,
		Needed: contract.PromotionApprovers("", false), At: workflow.Now(ctx), Gate: gate}
	snapshot := *ce
	ag.alert(ctx, contract.AgentAlert{Kind: contract.AlertVersionOffered, Version: ce.Version, Canary: &snapshot,
		Why: gate.String(), Needed: vs.Offer.Needed})
}

// approversOnly refuses anyone who is not an approver of the agent.
func (ag *agent) approversOnly(by []string) error {
	if len(by) == 0 {
		return errors.New("who decides (by) is required")
	}
	for _, b := range by {
		if !slices.Contains(ag.st.Approvers, b) {
			return fmt.Errorf("%s is not an approver of agent %s", b, ag.st.AgentID)
		}
	}
	return nil
}

// validateVersionOrDecline is validatePromote for a version promotion or
// a "Not yet".
func (ag *agent) validateVersionOrDecline(r contract.PromoteRequest) error {
	if !ag.canary {
		return errors.New("this agent's workflow predates canary versions: try again after it continues as new")
	}
	if ag.st.Status != contract.AgentActive {
		return fmt.Errorf("agent %s is %s: resume it first", ag.st.AgentID, ag.st.Status)
	}
	vs := ag.st.Versions
	switch {
	case r.Version != "" && r.Class != "":
		return errors.New("promote either a class or a version, not both")
	case r.Decline && r.Version != "":
		if vs.Offer == nil || vs.Offer.Version != r.Version {
			return fmt.Errorf("no promotion of version %s is offered to decline", r.Version)
		}
	case r.Decline:
		if _, ok := ag.st.Promotions[r.Class]; !ok {
			return fmt.Errorf("no promotion of %q actions is offered to decline", r.Class)
		}
	case r.Version == vs.Trusted:
		return fmt.Errorf("version %s is already agent %s's trusted version", r.Version, ag.st.AgentID)
	case vs.Canary == nil || vs.Canary.Version != r.Version:
		canary := "none"
		if vs.Canary != nil {
			canary = vs.Canary.Version
		}
		return fmt.Errorf("version %s is not agent %s's canary (canary: %s, trusted: %s): only the canary can be promoted",
			r.Version, ag.st.AgentID, canary, orNone(vs.Trusted))
	}
	if err := ag.approversOnly(r.By); err != nil {
		return err
	}
	if r.Decline {
		return nil
	}
	if r.Override {
		if strings.TrimSpace(r.Reason) == "" {
			return errors.New("an override needs a reason")
		}
		return nil
	}
	if gate := contract.CheckCanaryGate(*vs.Canary, ag.trust().Canary); !gate.Met {
		return fmt.Errorf("gate not met: %s", gate)
	}
	return nil
}

// promoteVersion makes the canary the trusted version once enough
// distinct approvers asked (one; two with an override); the trusted
// version it replaces is retired, and its requests are canaries from now.
func (ag *agent) promoteVersion(ctx workflow.Context, r contract.PromoteRequest) (contract.Promotion, error) {
	vs := &ag.st.Versions
	gate := contract.CheckCanaryGate(*vs.Canary, ag.trust().Canary)
	p := contract.Promotion{Version: r.Version, Status: contract.PromotionWaiting}
	if vs.Offer != nil && vs.Offer.Version == r.Version && vs.Offer.Status != contract.PromotionDeclined {
		p = *vs.Offer
	}
	p.Gate, p.At = gate, workflow.Now(ctx)
	if r.Override && !p.Override {
		p.Override, p.Reason = true, r.Reason
	}
	for _, by := range r.By {
		if !slices.Contains(p.By, by) {
			p.By = append(p.By, by)
		}
	}
	p.Needed = contract.PromotionApprovers("", p.Override)
	if len(p.By) < p.Needed {
		p.Status = contract.PromotionWaiting
		vs.Offer = &p
		return p, nil
	}
	p.Status = contract.PromotionPromoted
	snapshot := *vs.Canary
	why := fmt.Sprintf("version %s promoted to trusted", r.Version)
	if vs.Trusted != "" {
		why += fmt.Sprintf(" (%s retired: its requests are canaries from now)", vs.Trusted)
		vs.Retired = append(vs.Retired, vs.Trusted)
		if n := len(vs.Retired) - contract.AgentRetiredKept; n > 0 {
			vs.Retired = slices.Delete(vs.Retired, 0, n)
		}
	}
	trigger := ""
	if p.Override {
		why += " by override, gate not met: " + p.Reason
		trigger = "override"
	}
	vs.Trusted, vs.Since, vs.Canary, vs.Offer, vs.Pending = r.Version, p.At, nil, nil, nil
	ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionVersionPromoted, To: ag.st.Status, Version: r.Version,
		Trigger: trigger, By: slices.Clone(p.By), Why: viaWhy(why, r.Via), Canary: &snapshot})
	return p, nil
}

// decline records a "Not yet" on an offer: who and when, in the agent's
// transitions. The offer is not made again until ReofferAfter more pieces
// of evidence arrived (pairs, for a version); a human may still promote
// at any time. Declining a declined offer again changes nothing.
func (ag *agent) decline(ctx workflow.Context, r contract.PromoteRequest) (contract.Promotion, error) {
	var p contract.Promotion
	var pieces int
	var ev *contract.ClassEvidence
	var ce *contract.CanaryEvidence
	if r.Version != "" {
		p, pieces = *ag.st.Versions.Offer, ag.st.Versions.Canary.Pairs
		snapshot := *ag.st.Versions.Canary
		ce = &snapshot
	} else {
		p = ag.st.Promotions[r.Class]
		snapshot := ag.st.Evidence[r.Class]
		pieces, ev = snapshot.Pieces(), &snapshot
	}
	if p.Status == contract.PromotionDeclined {
		return p, nil
	}
	p.Status, p.DeclinedBy, p.EvidenceAt, p.At = contract.PromotionDeclined, slices.Clone(r.By), pieces, workflow.Now(ctx)
	what := fmt.Sprintf("%s actions %s → %s", r.Class, p.From, p.To)
	if r.Version != "" {
		ag.st.Versions.Offer = &p
		what = "version " + r.Version + " → trusted"
	} else {
		ag.st.Promotions[r.Class] = p
	}
	why := fmt.Sprintf("promotion of %s declined: not yet (offered again after %d more pieces of evidence)", what, ag.trust().ReofferAfter)
	ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionDeclined, To: ag.st.Status, Class: r.Class, Version: r.Version,
		By: slices.Clone(r.By), Why: viaWhy(why, r.Via), Evidence: ev, Canary: ce})
	return p, nil
}

// ofCanary reports whether a canary half is the current canary's (not one
// of a replaced canary, even of the same version).
func ofCanary(p contract.PairHalf, ce *contract.CanaryEvidence) bool {
	return p.Version == ce.Version && !p.At.Before(ce.Since)
}
