package contract

import (
	"fmt"
	"slices"
	"time"

	"github.com/airlockhq/airlock/policy"
)

// Canary versions (issue 11 item 4). A CycleRequest names the agent's
// version; the agent trusts one version and has at most one canary. The
// canary's cycles are planned in shadow whatever the agent's phases, and
// cycles of both versions sharing a correlation_id are paired: whether the
// canary proposed the same actions (types and effect hashes) is its
// evidence. Humans promote a canary to trusted; the machine never does.

// Transition kinds of versions and of "Not yet".
const (
	// TransitionCanary: a version became the agent's canary (replacing
	// the previous canary, whose evidence the transition keeps).
	TransitionCanary = "canary"
	// TransitionVersionPromoted: humans made the canary the trusted
	// version; the previous trusted version is retired.
	TransitionVersionPromoted = "version-promoted"
	// TransitionDeclined: a human said "Not yet" to a promotion offer.
	TransitionDeclined = "declined"
)

// AlertVersionOffered is the AgentAlert kind of a canary version's
// promotion offer.
const AlertVersionOffered = "version-offered"

// PromotionDeclined is the status of an offer a human declined ("Not
// yet"): it is offered again once ReofferAfter more evidence arrived.
const PromotionDeclined = "declined"

// ProposedAction is one action a cycle proposed, as pairing compares it:
// its type and its effect hash (policy.RenderedAction.EffectHash).
type ProposedAction struct {
	Type string `json:"type"`
	Hash string `json:"hash"`
}

// AgentVersions are the agent's trusted version and its canary.
type AgentVersions struct {
	// Trusted is the version whose cycles get the agent's phases ("":
	// none yet — unversioned cycles get them).
	Trusted string    `json:"trusted,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	// Canary is the version on trial and its evidence.
	Canary *CanaryEvidence `json:"canary,omitempty"`
	// Offer is the canary's promotion offered to or asked by humans.
	Offer *Promotion `json:"offer,omitempty"`
	// Retired are earlier trusted versions, newest last (a retired version
	// that comes back is a canary like any unknown version).
	Retired []string `json:"retired,omitempty"`
	// Pending are cycles waiting for their pair, oldest first (bounded:
	// AgentPendingPairsKept, each for at most AgentPairWait).
	Pending []PairHalf `json:"pending,omitempty"`
}

// Bounds of pairing.
const (
	// AgentPendingPairsKept is how many unpaired cycles wait for a pair.
	AgentPendingPairsKept = 200
	// AgentPairWait is how long a cycle waits for its pair.
	AgentPairWait = time.Hour
	// AgentRetiredKept is how many retired versions are remembered.
	AgentRetiredKept = 10
)

// PairHalf is one cycle of a pair, waiting for the other version's.
type PairHalf struct {
	CorrelationID string           `json:"correlation_id"`
	WorkflowID    string           `json:"workflow_id"`
	Version       string           `json:"version,omitempty"`
	Canary        bool             `json:"canary,omitempty"`
	Proposed      []ProposedAction `json:"proposed,omitempty"`
	At            time.Time        `json:"at"`
}

// CanaryEvidence is what a canary version showed since it became the
// canary.
type CanaryEvidence struct {
	Version string    `json:"version"`
	Since   time.Time `json:"since"`
	// Cycles reported by the canary, and its violations (requests the
	// policy refused).
	Cycles     int `json:"cycles"`
	Violations int `json:"violations"`
	// Pairs compared, how many agreed and disagreed; Unpaired counts
	// cycles whose pair never came within AgentPairWait.
	Pairs     int `json:"pairs"`
	Agreed    int `json:"agreed"`
	Disagreed int `json:"disagreed"`
	Unpaired  int `json:"unpaired"`
	// Recent are the last CanaryGates.Window pairs (true: agreed), oldest
	// first.
	Recent []bool `json:"recent,omitempty"`
	// LastDisagreement says what differed the last time.
	LastDisagreement string `json:"last_disagreement,omitempty"`
}

// CheckCanaryGate checks a canary's promotion gate.
func CheckCanaryGate(ev CanaryEvidence, g policy.CanaryGates) Gate {
	gate := Gate{Version: ev.Version}
	add := func(met bool, format string, args ...any) {
		gate.Checks = append(gate.Checks, GateCheck{Met: met, Text: fmt.Sprintf(format, args...)})
	}
	n, agreed := len(ev.Recent), 0
	for _, a := range ev.Recent {
		if a {
			agreed++
		}
	}
	pct := 0.0
	if n > 0 {
		pct = float64(agreed) / float64(n)
	}
	add(n >= g.MinPairs, "%d/%d paired cycles", n, g.MinPairs)
	add(n > 0 && pct >= g.MinAgreement, "%.0f %% proposed the same actions (need %.0f %%)", 100*pct, 100*g.MinAgreement)
	add(ev.Violations == 0, "%d violations (need 0)", ev.Violations)
	gate.Met = true
	for _, c := range gate.Checks {
		gate.Met = gate.Met && c.Met
	}
	return gate
}

// SameProposals reports whether two cycles proposed the same actions, in
// order, and if not, says what differed.
func SameProposals(trusted, canary []ProposedAction) (bool, string) {
	if len(trusted) != len(canary) {
		return false, fmt.Sprintf("%d actions proposed by the trusted version, %d by the canary", len(trusted), len(canary))
	}
	for i := range trusted {
		t, c := trusted[i], canary[i]
		switch {
		case t.Type != c.Type:
			return false, fmt.Sprintf("action %d: %s (trusted) vs %s (canary)", i, t.Type, c.Type)
		case t.Hash != c.Hash:
			return false, fmt.Sprintf("action %d (%s): different rendered action (%.12s vs %.12s)", i, t.Type, t.Hash, c.Hash)
		}
	}
	return true, ""
}

// Clone returns a deep copy.
func (v AgentVersions) Clone() AgentVersions {
	if v.Canary != nil {
		c := *v.Canary
		c.Recent = slices.Clone(c.Recent)
		v.Canary = &c
	}
	if v.Offer != nil {
		o := *v.Offer
		o.By, o.DeclinedBy = slices.Clone(o.By), slices.Clone(o.DeclinedBy)
		v.Offer = &o
	}
	v.Retired, v.Pending = slices.Clone(v.Retired), slices.Clone(v.Pending)
	return v
}
