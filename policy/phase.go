package policy

import "fmt"

// Phase is how far an agent is trusted for one class of actions.
type Phase string

const (
	PhaseShadow     Phase = "shadow"
	PhaseAdvisory   Phase = "advisory"
	PhaseSupervised Phase = "supervised"
	PhaseAutonomous Phase = "autonomous"
)

var phaseRank = map[Phase]int{PhaseShadow: 0, PhaseAdvisory: 1, PhaseSupervised: 2, PhaseAutonomous: 3}

// Valid reports whether p is one of the four phases.
func (p Phase) Valid() bool { _, ok := phaseRank[p]; return ok }

// Min returns the less trusted of two phases; an empty phase means no cap.
func (p Phase) Min(o Phase) Phase {
	if o == "" || (p != "" && phaseRank[p] <= phaseRank[o]) {
		return p
	}
	return o
}

// Mode is what the workflow does with one action.
type Mode string

const (
	ModeRun     Mode = "run"      // run now
	ModeWouldDo Mode = "would_do" // shadow: never run, record the rendered Job
	ModeApprove Mode = "approve"  // wait for human approval; timeout is a denial
	ModeVeto    Mode = "veto"     // run after a veto window unless stopped
)

// Decision is the policy verdict for one action, with the rule that made it.
type Decision struct {
	Phase     Phase  `json:"phase"`
	Mode      Mode   `json:"mode"`
	Approvals int    `json:"approvals"` // distinct approvers needed for ModeApprove
	Rule      string `json:"rule"`
}

// Decide applies the trust model of DESIGN.md to one action: the agent's
// phase for the action's class, capped by the action's max_phase; critical
// risk always needs two approvers; shadow never runs writes.
func Decide(ag *Agent, a *ActionType, params map[string]any) Decision {
	phase := ag.Phases[a.Class].Min(a.MaxPhase)
	d := Decision{Phase: phase}
	switch {
	case phase == PhaseShadow && a.Class == ClassWrite:
		d.Mode, d.Rule = ModeWouldDo, "shadow phase: write actions are recorded, never run"
	case a.Risk == RiskCritical:
		d.Mode, d.Approvals, d.Rule = ModeApprove, 2, "critical risk: two distinct approvers required"
	case a.Class == ClassRead:
		d.Mode, d.Rule = ModeRun, fmt.Sprintf("read action in %s phase runs", phase)
	case phase == PhaseAdvisory:
		d.Mode, d.Approvals, d.Rule = ModeApprove, 1, "advisory phase: every write needs approval"
	case phase == PhaseSupervised:
		if field, ok := outOfBounds(a.Bounds, params); ok {
			d.Mode, d.Approvals, d.Rule = ModeApprove, 1, fmt.Sprintf("supervised phase: %s outside bounds needs approval", field)
		} else {
			d.Mode, d.Rule = ModeVeto, "supervised phase: inside bounds, runs after the veto window"
		}
	case phase == PhaseAutonomous:
		d.Mode, d.Rule = ModeRun, "autonomous phase: write runs"
	default:
		// Unknown phase: fail closed.
		d.Mode, d.Approvals, d.Rule = ModeApprove, 1, fmt.Sprintf("unknown phase %q: approval required", phase)
	}
	return d
}

// outOfBounds returns the first bounded parameter outside its limits. A
// bounded parameter that is missing or not a number counts as outside.
func outOfBounds(bounds map[string]Bound, params map[string]any) (string, bool) {
	for _, name := range sortedKeys(bounds) {
		b := bounds[name]
		v, ok := toFloat(params[name])
		if !ok || (b.Min != nil && v < *b.Min) || (b.Max != nil && v > *b.Max) {
			return "params." + name, true
		}
	}
	return "", false
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	default:
		return 0, false
	}
}
