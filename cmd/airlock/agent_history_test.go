package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

func TestHistoryAndVersionsPrintWhatHappenedAndWhy(t *testing.T) {
	at := time.Date(2026, 11, 25, 14, 3, 7, 0, time.UTC)
	ce := &contract.CanaryEvidence{Version: "v2", Since: at, Cycles: 3, Pairs: 2, Agreed: 1, Disagreed: 1, Recent: []bool{true, false},
		LastDisagreement: "in-7: action 0 (scale): different rendered action"}
	s := contract.AgentState{AgentID: "ops", Trust: policy.Trust{Canary: policy.CanaryGates{MinPairs: 2, MinAgreement: 1}},
		Versions: contract.AgentVersions{Trusted: "v1", Since: at, Canary: ce, Retired: []string{"v0"},
			Offer: &contract.Promotion{Version: "v2", Status: contract.PromotionDeclined, DeclinedBy: []string{"U1"}, Needed: 1}},
		Transitions: []contract.AgentTransition{
			{At: at, Kind: contract.TransitionDemoted, Class: policy.ClassWrite, Trigger: policy.TriggerDenials, To: contract.AgentActive,
				Why: "write demoted advisory → shadow: 3 denials in a row", Evidence: &contract.ClassEvidence{Phase: policy.PhaseAdvisory, Since: at, Denied: 3}},
			{At: at, Kind: contract.TransitionDeclined, Version: "v2", By: []string{"U1"}, To: contract.AgentActive, Why: "not yet", Canary: ce},
		}}
	var b bytes.Buffer
	printVersions(&b, s)
	out := b.String()
	assert.Contains(t, out, "versions: trusted v1 since 2026-11-25T14:03:07Z (retired: v0)")
	assert.Contains(t, out, "canary v2 since 2026-11-25T14:03:07Z: every write in shadow; 3 cycles, 2 pairs (1 same actions, 1 different)")
	assert.Contains(t, out, "last disagreement: in-7")
	assert.Contains(t, out, "gate to trusted not met: ✓ 2/2 paired cycles; ✗ 50 % proposed the same actions (need 100 %)")
	assert.Contains(t, out, "promotion to trusted declined: 0/1 approvers (U1)")

	b.Reset()
	printHistory(&b, s)
	out = b.String()
	assert.Contains(t, out, "2026-11-25T14:03:07Z  demoted write [denials]: write demoted advisory → shadow: 3 denials in a row")
	assert.Contains(t, out, "evidence in advisory since 2026-11-25T14:03:07Z: 0 shadow proposals (0 agree, 0 disagree), 0 approved, 3 denied")
	assert.Contains(t, out, "declined version v2 by U1: not yet")
	assert.Contains(t, out, "canary v2 evidence: 2 pairs (1 same actions, 1 different)")
}
