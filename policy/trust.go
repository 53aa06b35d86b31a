package policy

import (
	"regexp"
	"slices"
)

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
	// Version is the agent's initially trusted version (requests carrying
	// another version are canaries). Default: "" — no version is trusted
	// until a human promotes a canary; unversioned requests keep the
	// agent's phases.
	Version string `json:"version,omitempty"`
	// Canary is what promoting a canary version needs.
	Canary CanaryGates `json:"canary,omitzero"`
	// ReofferAfter is how many new pieces of evidence a class (or a
	// canary: pairs) needs after a human said "Not yet" to an offer
	// before it is offered again. Default: 10.
	ReofferAfter int `json:"reoffer_after,omitempty"`
}

// CanaryGates are the evidence a canary version needs before humans are
// offered to make it the trusted version: over the last Window paired
// cycles (same correlation_id, one from each version), at least MinPairs
// pairs and at least MinAgreement of them proposing the same actions
// (types and rendered hashes); no violation by the canary.
type CanaryGates struct {
	// Defaults: 20, 0.95, 50.
	MinPairs     int     `json:"min_pairs,omitempty"`
	MinAgreement float64 `json:"min_agreement,omitempty"`
	Window       int     `json:"window,omitempty"`
}

var versionPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// ValidVersion reports whether v is a well-formed agent version: 1-64
// letters, digits, '.', '_', '+' or '-', starting with a letter or digit.
func ValidVersion(v string) bool { return versionPattern.MatchString(v) }

// VersionRole is how a cycle's version is treated.
type VersionRole string

const (
	// RoleUnversioned: no version, and the agent trusts none: the agent's
	// phases apply, as before versions.
	RoleUnversioned VersionRole = "unversioned"
	// RoleTrusted: the agent's trusted version: its phases apply.
	RoleTrusted VersionRole = "trusted"
	// RoleCanary: any other version (an unknown version is never trusted
	// by default), or no version from an agent that trusts one: every
	// action is planned in shadow.
	RoleCanary VersionRole = "canary"
)

// RoleOf decides how a request of version is treated by an agent whose
// trusted version is trusted ("" when none).
func RoleOf(version, trusted string) VersionRole {
	switch {
	case version == "" && trusted == "":
		return RoleUnversioned
	case version != "" && version == trusted:
		return RoleTrusted
	}
	return RoleCanary
}

// CanaryPhases are the phases a canary's cycle is planned with: shadow
// for every class, whatever the agent earned (writes are dry runs; reads
// run with read-only credentials).
func CanaryPhases(phases map[Class]Phase) map[Class]Phase {
	out := make(map[Class]Phase, len(phases))
	for cl := range phases {
		out[cl] = PhaseShadow
	}
	for _, cl := range []Class{ClassRead, ClassWrite} {
		out[cl] = PhaseShadow
	}
	return out
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
	def(&t.Canary.MinPairs, 20)
	deff(&t.Canary.MinAgreement, 0.95)
	def(&t.Canary.Window, 50)
	def(&t.ReofferAfter, 10)
	t.Demotion.Disabled = slices.Clone(d.Disabled)
	return t
}

// Same reports whether two trust settings are the same.
func (t Trust) Same(o Trust) bool {
	return t.Start == o.Start && t.Gates == o.Gates && t.Version == o.Version && t.Canary == o.Canary && t.ReofferAfter == o.ReofferAfter && t.Demotion.ConsecutiveDenials == o.Demotion.ConsecutiveDenials &&
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
		{"canary.min_pairs", t.Canary.MinPairs}, {"canary.window", t.Canary.Window}, {"reoffer_after", t.ReofferAfter},
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
		{"canary.min_agreement", t.Canary.MinAgreement},
	}
	for _, f := range rates {
		if f.v < 0 || f.v > 1 {
			probs.add("%s.trust.%s: must be a fraction between 0 and 1, got %v", at, f.name, f.v)
		}
	}
	if t.Canary.MinPairs > t.Canary.Window && t.Canary.Window > 0 {
		probs.add("%s.trust.canary.min_pairs: %d can never be met in a window of %d pairs", at, t.Canary.MinPairs, t.Canary.Window)
	}
	if t.Version != "" && !ValidVersion(t.Version) {
		probs.add("%s.trust.version: %q must be 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit", at, t.Version)
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
