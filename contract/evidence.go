package contract

import (
	"fmt"
	"time"

	"github.com/airlockhq/airlock/policy"
)

// ActionReport is one action of a cycle as its agent's evidence.
type ActionReport struct {
	Index int          `json:"index"`
	Type  string       `json:"type"`
	Class policy.Class `json:"class"`
	Phase policy.Phase `json:"phase"`
	Mode  policy.Mode  `json:"mode"`
	// Outcome is the action's (succeeded, failed, denied, would_do, …).
	Outcome Outcome `json:"outcome"`
	// Approved: humans approved it; Denied: a human denied it; Stopped: a
	// human stopped it in its veto window; Expired: nobody decided in time.
	Approved bool `json:"approved,omitempty"`
	Denied   bool `json:"denied,omitempty"`
	Stopped  bool `json:"stopped,omitempty"`
	Expired  bool `json:"expired,omitempty"`
	// Ran: a Job ran for it; RolledBack: its rollback ran after it failed.
	Ran        bool `json:"ran,omitempty"`
	RolledBack bool `json:"rolled_back,omitempty"`
	// Budget names the budget that refused it.
	Budget string `json:"budget,omitempty"`
}

// ClassEvidence is what an agent showed in one action class since the
// class entered its current phase (Since: the promotion clock), and the
// rolling windows demotion reads.
type ClassEvidence struct {
	Phase policy.Phase `json:"phase"`
	Since time.Time    `json:"since"`
	// Shadow: proposals recorded, and the feedback they got.
	ShadowProposals int           `json:"shadow_proposals"`
	Feedback        FeedbackCount `json:"feedback"`
	// Approvals decided by humans: approved and denied; ConsecutiveDenials
	// counts human denials (and veto stops) since the last approval or run.
	Approved           int `json:"approved"`
	Denied             int `json:"denied"`
	ConsecutiveDenials int `json:"consecutive_denials"`
	// Runs that ran a Job, and how many failed, were stopped in their veto
	// window, or were rolled back.
	Runs      int `json:"runs"`
	Failed    int `json:"failed"`
	Vetoed    int `json:"vetoed"`
	Rollbacks int `json:"rollbacks"`
	// Violations: verified requests the policy refused.
	Violations int `json:"violations"`
	// RecentRuns (true: failed) and RecentFeedback (true: disagree) are the
	// last Demotion.Window of each, oldest first.
	RecentRuns     []bool `json:"recent_runs,omitempty"`
	RecentFeedback []bool `json:"recent_feedback,omitempty"`
}

// Gate is a class's promotion gate checked against its evidence.
type Gate struct {
	Class policy.Class `json:"class,omitempty"`
	// Version is set instead of a class for a canary version's gate.
	Version string       `json:"version,omitempty"`
	From    policy.Phase `json:"from"`
	To      policy.Phase `json:"to"`
	Met     bool         `json:"met"`
	// Checks say, one per condition, what was needed and what is there
	// ("23/30 shadow proposals with feedback").
	Checks []GateCheck `json:"checks"`
}

// GateCheck is one condition of a gate.
type GateCheck struct {
	Met  bool   `json:"met"`
	Text string `json:"text"`
}

func (g Gate) String() string {
	s := fmt.Sprintf("%s: %s → %s ", g.Class, g.From, g.To)
	if g.Version != "" {
		s = fmt.Sprintf("version %s → trusted ", g.Version)
	}
	if g.Met {
		s += "met"
	} else {
		s += "not met"
	}
	for _, c := range g.Checks {
		mark := "✗"
		if c.Met {
			mark = "✓"
		}
		s += "; " + mark + " " + c.Text
	}
	return s
}

// CheckGate checks the gate from the class's current phase to the next
// (never above cap; a class at its cap has no gate: To is empty).
func CheckGate(class policy.Class, ev ClassEvidence, current, capPhase policy.Phase, g policy.Gates, now time.Time) Gate {
	gate := Gate{Class: class, From: current}
	if !current.Below(capPhase) {
		return gate
	}
	gate.To = current.Up()
	add := func(met bool, format string, args ...any) {
		gate.Checks = append(gate.Checks, GateCheck{Met: met, Text: fmt.Sprintf(format, args...)})
	}
	pct := func(n, of int) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / float64(of)
	}
	switch current {
	case policy.PhaseShadow:
		n := ev.Feedback.Agree + ev.Feedback.Disagree
		add(n >= g.MinFeedback, "%d/%d shadow proposals with feedback", n, g.MinFeedback)
		add(n > 0 && pct(ev.Feedback.Agree, n) >= g.MinAgree, "%.0f %% agree (need %.0f %%)", 100*pct(ev.Feedback.Agree, n), 100*g.MinAgree)
	case policy.PhaseAdvisory:
		n := ev.Approved + ev.Denied
		add(n >= g.MinApprovals, "%d/%d decided approvals", n, g.MinApprovals)
		add(n > 0 && pct(ev.Approved, n) >= g.MinApproved, "%.0f %% approved (need %.0f %%)", 100*pct(ev.Approved, n), 100*g.MinApproved)
		add(ev.Failed == 0, "%d failed runs (need 0)", ev.Failed)
	case policy.PhaseSupervised:
		add(ev.Runs >= g.MinRuns, "%d/%d runs inside bounds", ev.Runs, g.MinRuns)
		add(pct(ev.Vetoed, ev.Runs+ev.Vetoed) <= g.MaxVetoed, "%.1f %% stopped in the veto window (at most %.1f %%)",
			100*pct(ev.Vetoed, ev.Runs+ev.Vetoed), 100*g.MaxVetoed)
		add(ev.Failed == 0, "%d failed runs (need 0)", ev.Failed)
		days := int(now.Sub(ev.Since).Hours() / 24)
		add(days >= g.MinDays, "%d/%d days in the phase", days, g.MinDays)
	}
	add(ev.Violations == 0, "%d violations (need 0)", ev.Violations)
	gate.Met = true
	for _, c := range gate.Checks {
		gate.Met = gate.Met && c.Met
	}
	return gate
}

// PromoteRequest asks to promote one class of an agent one phase. By are
// the approvers asking (Slack clicks arrive one at a time and add up).
// Override promotes past an unmet gate: it needs ResumeApprovers distinct
// approvers and a Reason, and is marked in the record.
//
// Version promotes the agent's canary version to trusted instead (Class
// empty): one approver, or two with Override. Decline ("Not yet") records
// that the askers decline the class's (or the version's) offer: it is not
// offered again until more evidence arrived (policy.Trust.ReofferAfter).
type PromoteRequest struct {
	Class    policy.Class `json:"class,omitempty"`
	Version  string       `json:"version,omitempty"`
	Decline  bool         `json:"decline,omitempty"`
	By       []string     `json:"by"`
	Override bool         `json:"override,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	Via      string       `json:"via,omitempty"`
}

// Promotion is a promotion waiting for humans, or what became of one.
type Promotion struct {
	Class policy.Class `json:"class,omitempty"`
	// Version, for a canary version's promotion to trusted.
	Version string       `json:"version,omitempty"`
	From    policy.Phase `json:"from"`
	To      policy.Phase `json:"to"`
	// Status: offered (gate met, nobody asked yet), waiting (needs another
	// approver), promoted.
	Status   string    `json:"status"`
	By       []string  `json:"by,omitempty"`
	Needed   int       `json:"needed"`
	Override bool      `json:"override,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at,omitzero"`
	Gate     Gate      `json:"gate"`
	// DeclinedBy said "Not yet" (status declined) when the evidence
	// counted EvidenceAt pieces; it is offered again at EvidenceAt +
	// policy.Trust.ReofferAfter.
	DeclinedBy []string `json:"declined_by,omitempty"`
	EvidenceAt int      `json:"evidence_at,omitempty"`
}

// Pieces counts the evidence a class gathered in its phase, the measure
// of "new evidence" after a decline.
func (ev ClassEvidence) Pieces() int {
	return ev.ShadowProposals + ev.Feedback.Agree + ev.Feedback.Disagree + ev.Approved + ev.Denied + ev.Runs + ev.Vetoed
}

// Promotion statuses.
const (
	PromotionOffered  = "offered"
	PromotionWaiting  = "waiting"
	PromotionPromoted = "promoted"
)

// PromotionApprovers is how many distinct approvers a promotion to phase
// needs: two for autonomous (and for any override), one otherwise.
func PromotionApprovers(to policy.Phase, override bool) int {
	if override || to == policy.PhaseAutonomous {
		return 2
	}
	return 1
}

// ActivityPostAgentAlert is the activity (registered by the worker, Slack
// or log) that tells an agent's approvers about a promotion offer or a
// demotion.
const ActivityPostAgentAlert = "PostAgentAlert"

// AlertPromotionOffered is the AgentAlert kind of a promotion offer (the
// others are the transition kinds demoted and clock-reset).
const AlertPromotionOffered = "promotion-offered"

// AgentAlert is a message to an agent's approvers about its trust.
type AgentAlert struct {
	AgentID string       `json:"agent_id"`
	Kind    string       `json:"kind"`
	Class   policy.Class `json:"class"`
	From    policy.Phase `json:"from"`
	To      policy.Phase `json:"to"`
	Trigger string       `json:"trigger,omitempty"`
	// Version and Canary, for a canary version's offer.
	Version   string          `json:"version,omitempty"`
	Canary    *CanaryEvidence `json:"canary,omitempty"`
	Why       string          `json:"why"`
	Approvers []string        `json:"approvers,omitempty"`
	// Needed is how many approvers a promotion needs.
	Needed   int           `json:"needed,omitempty"`
	Evidence ClassEvidence `json:"evidence"`
	At       time.Time     `json:"at"`
}
