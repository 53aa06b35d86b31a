package workflows_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
)

func TestAuditTrailRecordsEverythingAndDetectsTampering(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	var log decisionLog
	h := hashOf(t, s, "adv", scale)
	s.decideAt(time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionApprove, Approver: "U2", Via: "slack"})
	res := runCycle(t, s, request("adv", scale))
	trail := res.Audit
	require.Nil(t, contract.VerifyAudit(trail), "a fresh trail verifies")

	kinds := map[string]int{}
	for _, e := range trail {
		kinds[e.Kind]++
	}
	for _, k := range []string{contract.AuditCycle, contract.AuditThought, contract.AuditProposal, contract.AuditPolicy,
		contract.AuditDecision, contract.AuditLease, contract.AuditJob, contract.AuditResult} {
		assert.Positive(t, kinds[k], "trail has a %s entry", k)
	}
	var decision, lease contract.AuditEntry
	for _, e := range trail {
		switch e.Kind {
		case contract.AuditDecision:
			decision = e
		case contract.AuditLease:
			if lease.Kind == "" {
				lease = e
			}
		}
	}
	assert.Equal(t, "U2", decision.Data["approver"], "the approver is in the trail")
	assert.Equal(t, "acc-scale", lease.Data["accessor"], "the lease is recorded by accessor")

	tests := map[string]struct {
		tamper func([]contract.AuditEntry) []contract.AuditEntry
		seq    int
		reason string
	}{
		"altered content": {func(tr []contract.AuditEntry) []contract.AuditEntry {
			tr[3].Summary = "nothing to see here"
			return tr
		}, 3, "altered"},
		"altered data": {func(tr []contract.AuditEntry) []contract.AuditEntry {
			tr[decision.Seq].Data["approver"] = "U1"
			return tr
		}, decision.Seq, "altered"},
		"dropped entry": {func(tr []contract.AuditEntry) []contract.AuditEntry {
			return append(tr[:2:2], tr[3:]...)
		}, 2, "missing or reordered"},
		"rehashed entry without relinking": {func(tr []contract.AuditEntry) []contract.AuditEntry {
			tr[4].Summary = "forged"
			tr[4].Hash = "0000"
			return tr
		}, 4, "altered"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cp := make([]contract.AuditEntry, len(trail))
			for i, e := range trail {
				cp[i] = e
				cp[i].Data = map[string]any{}
				for k, v := range e.Data {
					cp[i].Data[k] = v
				}
			}
			b := contract.VerifyAudit(tc.tamper(cp))
			require.NotNil(t, b)
			assert.Equal(t, tc.seq, b.Seq)
			assert.Contains(t, b.Reason, tc.reason)
		})
	}
}
