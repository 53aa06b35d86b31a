package starter

import (
	"fmt"
	"slices"
	"strings"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Bounds of a cycle's static summary, so a long proposal stays one line
// in the Temporal UI's list and header.
const (
	summaryActions  = 3  // actions named; the rest are counted
	summaryValueLen = 32 // runes per parameter value
	summaryLen      = 160
)

// StaticSummary is the one-line static summary a cycle is started with, what
// an operator reads first in the Temporal UI: the agent and its proposed
// actions, each as "<type> <targets>→<values>" from its parameters, e.g.
// "advisor: cluster-read checkout, scale-deployment checkout→5". String
// parameters read as targets, the others as values. Parameters are not
// secrets (they are rendered into Job commands), and like every payload
// the summary is encrypted by the codec.
func StaticSummary(req contract.CycleRequest) string {
	var parts []string
	for i, p := range req.Actions {
		if i == summaryActions {
			parts = append(parts, fmt.Sprintf("+%d more", len(req.Actions)-i))
			break
		}
		parts = append(parts, proposalSummary(p))
	}
	return clipRunes(req.AgentID+": "+strings.Join(parts, ", "), summaryLen)
}

// StaticDetails is the static details text (Markdown) shown under the
// summary: who proposed the cycle and each action's rationale.
func StaticDetails(req contract.CycleRequest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Cycle %s of agent %s", req.CycleID, req.AgentID)
	if req.Principal != "" {
		fmt.Fprintf(&b, ", asked by %s", req.Principal)
	}
	fmt.Fprintf(&b, "; %d thought(s).\n", len(req.Thoughts))
	for i, p := range req.Actions {
		fmt.Fprintf(&b, "\n- #%d %s", i, proposalSummary(p))
		if p.Rationale != "" {
			fmt.Fprintf(&b, ": %s", clipRunes(p.Rationale, 200))
		}
	}
	return b.String()
}

func proposalSummary(p policy.Proposal) string {
	keys := make([]string, 0, len(p.Params))
	for k := range p.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var targets, values []string
	for _, k := range keys {
		switch v := p.Params[k].(type) {
		case string:
			targets = append(targets, clipRunes(v, summaryValueLen))
		case nil:
		default:
			values = append(values, clipRunes(fmt.Sprint(v), summaryValueLen))
		}
	}
	s := p.Type
	if len(targets) > 0 {
		s += " " + strings.Join(targets, "/")
	}
	if len(values) > 0 {
		s += "→" + strings.Join(values, ",")
	}
	return s
}

func clipRunes(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ") // one line
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
