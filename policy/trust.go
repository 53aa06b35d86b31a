package policy

import "slices"

// Trust is how an agent earns and loses phases (issue "earned trust"):
// the evidence a promotion needs (Gates, offered to humans, never applied
// by the machine) and what demotes it at once (Demotion). Zero values take
// the defaults, filled in at load.
type Trust struct {
	// Start is the phase a new agent starts in for every class (never
	// above the class's phase in the catalog, which stays its cap), so it
	// earns the rest. Default: "" — it starts at the catalog's phases.
	Start    Phase    `json:"start,omitempty"`
	Gates    Gates    `json:"gates,omitzero"`
	Demotion Demotion `json:"demotion,omitzero"`
}

// Gates are the evidence each promotion needs, counted per action class
// since the class entered its current phase. Every gate also needs zero
// violations, and advisory → supervised and supervised → autonomous zero
// failed runs, in that time.
type Gates struct {
	// Shadow → advisory: at least MinFeedback shadow proposals with
	// Agree/Disagree feedback, at least MinAgree of them agreed.
	// Defaults: 30, 0.90.
	MinFeedback int     `json:"min_feedback,omitempty"`
	MinAgree    float64 `json:"min_agree,omitempty"`
	// Advisory → supervised: at least MinApprovals decided approvals, at
	// least MinApproved of them approved. Defaults: 50, 0.95.
	MinApprovals int     `json:"min_approvals,omitempty"`
	MinApproved  float64 `json:"min_approved,omitempty"`
	// Supervised → autonomous: at least MinRuns runs inside bounds, at most
	// MaxVetoed of them stopped in the veto window, and MinDays in the
	// phase. Defaults: 50, 0.02, 7.
	MinRuns   int     `json:"min_runs,omitempty"`
	MaxVetoed float64 `json:"max_vetoed,omitempty"`
	MinDays   int     `json:"min_days,omitempty"`
}

// Demotion triggers. Each demotes the class one phase (a violation: every
// class straight to shadow); Disabled switches triggers off by name.
type Demotion struct {
	// ConsecutiveDenials by humans (deny, or stop in a veto window).
	// Default: 3.
	ConsecutiveDenials int `json:"consecutive_denials,omitempty"`
	// FailureRate over the last Window runs (failed / Window): above it
	// demotes. Default: 0.10 (three failures among the last 20 runs).
	FailureRate float64 `json:"failure_rate,omitempty"`
	// DisagreeRate over the last Window shadow proposals with feedback:
	// above it, the class stays in shadow and its promotion clock resets.
	// Default: 0.20.
	DisagreeRate float64 `json:"disagree_rate,omitempty"`
	// Window of runs and of feedback. Default: 20.
	Window int `json:"window,omitempty"`
	// Disabled lists triggers switched off: denials, failures, rollback,
	// violation, disagreement.
	Disabled []string `json:"disabled,omitempty"`
}

// Demotion trigger names (Demotion.Disabled, and the transitions they cause).
const (
	TriggerDenials      = "denials"
	TriggerFailures     = "failures"
	TriggerRollback     = "rollback"
	TriggerViolation    = "violation"
	TriggerDisagreement = "disagreement"
)

var triggers = []string{TriggerDenials, TriggerFailures, TriggerRollback, TriggerViolation, TriggerDisagreement}

// On reports whether a demotion trigger is on.
func (d Demotion) On(trigger string) bool { return !slices.Contains(d.Disabled, trigger) }

// WithDefaults fills zero values with the defaults.
func (t Trust) WithDefaults() Trust {
	g, d := &t.Gates, &t.Demotion
	def := func(v *int, x int) {
		if *v == 0 {
			*v = x
		}
	}
	deff := func(v *float64, x float64) {
		if *v == 0 {
			*v = x
		}
	}
	def(&g.MinFeedback, 30)
	deff(&g.MinAgree, 0.90)
	def(&g.MinApprovals, 50)
	deff(&g.MinApproved, 0.95)
	def(&g.MinRuns, 50)
	deff(&g.MaxVetoed, 0.02)
	def(&g.MinDays, 7)
	def(&d.ConsecutiveDenials, 3)
	deff(&d.FailureRate, 0.10)
	deff(&d.DisagreeRate, 0.20)
	def(&d.Window, 20)
	t.Demotion.Disabled = slices.Clone(d.Disabled)
	return t
}

// Same reports whether two trust settings are the same.
func (t Trust) Same(o Trust) bool {
	return t.Start == o.Start && t.Gates == o.Gates && t.Demotion.ConsecutiveDenials == o.Demotion.ConsecutiveDenials &&
		t.Demotion.FailureRate == o.Demotion.FailureRate && t.Demotion.DisagreeRate == o.Demotion.DisagreeRate &&
		t.Demotion.Window == o.Demotion.Window && slices.Equal(t.Demotion.Disabled, o.Demotion.Disabled)
}

func validateTrust(probs *Problems, at string, t *Trust) {
	ints := []struct {
		name string
		v    int
	}{
		{"gates.min_feedback", t.Gates.MinFeedback}, {"gates.min_approvals", t.Gates.MinApprovals},
		{"gates.min_runs", t.Gates.MinRuns}, {"gates.min_days", t.Gates.MinDays},
		{"demotion.consecutive_denials", t.Demotion.ConsecutiveDenials}, {"demotion.window", t.Demotion.Window},
	}
	for _, f := range ints {
		if f.v < 0 {
			probs.add("%s.trust.%s: must not be negative (0 takes the default)", at, f.name)
		}
	}
	rates := []struct {
		name string
		v    float64
	}{
		{"gates.min_agree", t.Gates.MinAgree}, {"gates.min_approved", t.Gates.MinApproved}, {"gates.max_vetoed", t.Gates.MaxVetoed},
		{"demotion.failure_rate", t.Demotion.FailureRate}, {"demotion.disagree_rate", t.Demotion.DisagreeRate},
	}
	for _, f := range rates {
		if f.v < 0 || f.v > 1 {
			probs.add("%s.trust.%s: must be a fraction between 0 and 1, got %v", at, f.name, f.v)
		}
	}
	if t.Start != "" && !t.Start.Valid() {
		probs.add("%s.trust.start: unknown phase %q", at, t.Start)
	}
	for _, o := range t.Demotion.Disabled {
		if !slices.Contains(triggers, o) {
			probs.add("%s.trust.demotion.disabled: unknown trigger %q (want one of %v)", at, o, triggers)
		}
	}
	*t = t.WithDefaults()
}

// Down is the phase one step less trusted (shadow stays shadow).
func (p Phase) Down() Phase {
	for q, r := range phaseRank {
		if r == phaseRank[p]-1 {
			return q
		}
	}
	return PhaseShadow
}

// Up is the phase one step more trusted (autonomous stays autonomous).
func (p Phase) Up() Phase {
	for q, r := range phaseRank {
		if r == phaseRank[p]+1 {
			return q
		}
	}
	return PhaseAutonomous
}

// Below reports whether p is less trusted than o.
func (p Phase) Below(o Phase) bool { return phaseRank[p] < phaseRank[o] }
