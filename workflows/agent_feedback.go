package workflows

import (
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Shadow feedback lives here, in the agent's workflow, not in the cycle:
// a shadow cycle posts its "would do" message and ends at once, reporting
// its proposals; Agree/Disagree from the agent's approvers arrive later as
// UpdateFeedback and become the agent's evidence. Nothing here can make
// anything run.

// addShadow keeps a cycle's shadow proposals open to feedback, dropping
// expired ones and, past AgentShadowKept, the oldest.
func (ag *agent) addShadow(ctx workflow.Context, ps []contract.ShadowProposal) {
	now := workflow.Now(ctx)
	ag.st.Shadow = slices.DeleteFunc(ag.st.Shadow, func(p contract.ShadowProposal) bool { return !p.Until.After(now) })
	ag.st.Shadow = append(ag.st.Shadow, ps...)
	if n := len(ag.st.Shadow) - contract.AgentShadowKept; n > 0 {
		ag.st.Shadow = slices.Delete(ag.st.Shadow, 0, n)
	}
}

func (ag *agent) shadowProposal(workflowID string, index int) *contract.ShadowProposal {
	for i := range ag.st.Shadow {
		if p := &ag.st.Shadow[i]; p.WorkflowID == workflowID && p.Index == index {
			return p
		}
	}
	return nil
}

func givenBy(p *contract.ShadowProposal, approver string) bool {
	return slices.ContainsFunc(p.Feedback, func(d contract.DecisionRecord) bool { return d.Approver == approver })
}

// validateFeedback refuses, before anything reaches history: feedback on a
// proposal the agent does not hold, past its window, on a changed action,
// by someone who is not the agent's approver or who asked for the cycle,
// or of a kind other than agree/disagree.
func (ag *agent) validateFeedback(ctx workflow.Context, f contract.FeedbackDecision) error {
	p := ag.shadowProposal(f.CycleWorkflowID, f.ActionIndex)
	switch {
	case f.Kind != contract.DecisionAgree && f.Kind != contract.DecisionDisagree:
		return fmt.Errorf("%q is not a valid decision for a shadow proposal (want agree or disagree)", f.Kind)
	case p == nil:
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no shadow proposal %d of %s awaits feedback", f.ActionIndex, f.CycleWorkflowID), contract.ErrTypeUnknownProposal, nil)
	case f.Approver == "":
		return errors.New("approver is required")
	case slices.Contains(p.Selves, f.Approver):
		return fmt.Errorf("%s requested this cycle and cannot give feedback on it", f.Approver)
	case !slices.Contains(ag.st.Approvers, f.Approver):
		return fmt.Errorf("%s is not an approver of agent %s", f.Approver, ag.st.AgentID)
	case f.ActionHash != p.Hash:
		return errors.New("stale decision: the action changed since it was shown (hash mismatch)")
	case givenBy(p, f.Approver):
		return nil // a second click: harmless
	case !p.Until.After(workflow.Now(ctx)):
		return fmt.Errorf("the feedback window of action %d closed at %s", f.ActionIndex, p.Until.UTC().Format("2006-01-02 15:04:05Z"))
	}
	return nil
}

// feedback records one approver's Agree/Disagree, once.
func (ag *agent) feedback(ctx workflow.Context, f contract.FeedbackDecision) (contract.DecisionResult, error) {
	ag.handled++
	p := ag.shadowProposal(f.CycleWorkflowID, f.ActionIndex)
	if p == nil { // dropped between validation and now (cannot happen: no yield)
		return contract.DecisionResult{}, fmt.Errorf("no shadow proposal %d of %s", f.ActionIndex, f.CycleWorkflowID)
	}
	if givenBy(p, f.Approver) {
		return contract.DecisionResult{Status: statusAlready}, nil
	}
	now := workflow.Now(ctx)
	p.Feedback = append(p.Feedback, contract.DecisionRecord{Approver: f.Approver, Kind: f.Kind, Via: f.Via, At: now, Comment: f.Comment})
	c := &ag.st.Counters
	if c.Feedback == nil {
		c.Feedback = map[policy.Class]contract.FeedbackCount{}
	}
	n := c.Feedback[p.Class]
	if f.Kind == contract.DecisionAgree {
		n.Agree++
	} else {
		n.Disagree++
	}
	c.Feedback[p.Class] = n
	ag.absorbFeedback(ctx, p.Class, f.Kind == contract.DecisionDisagree)
	workflow.GetLogger(ctx).Info("shadow feedback", "cycle", f.CycleWorkflowID, "action", f.ActionIndex, "approver", f.Approver, "decision", f.Kind)
	return contract.DecisionResult{Status: statusRecorded, DecidedBy: f.Approver, DecidedAt: now}, nil
}
