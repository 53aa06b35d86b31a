package policy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/policy"
)

const trustCatalog = `
actions:
  - name: look
    class: read
    image: busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
    command: ["true"]
    risk: low
    vault_policies: [ro]
agents:
  - id: a
    owner: team
    namespace: agents-a
    actions: [look]
    phases: {read: autonomous, write: shadow}
    trust:
      start: shadow
      gates: {min_feedback: 10}
      demotion: {disabled: [violation], window: 10}
  - id: b
    owner: team
    namespace: agents-b
    actions: [look]
    phases: {read: autonomous, write: shadow}
`

// The catalog's trust block loads (YAML keys that YAML 1.1 would read as
// booleans, like "off", are avoided) and takes the defaults where silent.
func TestCatalogTrustLoadsWithDefaults(t *testing.T) {
	cat, err := policy.Parse("t.yaml", []byte(trustCatalog))
	require.NoError(t, err)
	a, _ := cat.Agent("a")
	assert.Equal(t, policy.PhaseShadow, a.Trust.Start)
	assert.Equal(t, 10, a.Trust.Gates.MinFeedback)
	assert.Equal(t, 0.90, a.Trust.Gates.MinAgree, "default")
	assert.False(t, a.Trust.Demotion.On(policy.TriggerViolation))
	assert.True(t, a.Trust.Demotion.On(policy.TriggerDenials))
	assert.Equal(t, 10, a.Trust.Demotion.Window)
	b, _ := cat.Agent("b")
	assert.Equal(t, policy.Trust{}.WithDefaults(), b.Trust)
	assert.Equal(t, 3, b.Trust.Demotion.ConsecutiveDenials)
}

func TestCatalogTrustRefusesNonsense(t *testing.T) {
	for name, trust := range map[string]string{
		"unknown trigger": `{demotion: {disabled: [mood]}}`,
		"rate above one":  `{gates: {min_agree: 1.5}}`,
		"negative count":  `{demotion: {consecutive_denials: -1}}`,
		"unknown phase":   `{start: trusted}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := policy.Parse("t.yaml", []byte(trustCatalog+"    trust: "+trust+"\n"))
			require.Error(t, err)
		})
	}
}

func TestPhaseUpAndDown(t *testing.T) {
	assert.Equal(t, policy.PhaseAdvisory, policy.PhaseShadow.Up())
	assert.Equal(t, policy.PhaseAutonomous, policy.PhaseAutonomous.Up())
	assert.Equal(t, policy.PhaseSupervised, policy.PhaseAutonomous.Down())
	assert.Equal(t, policy.PhaseShadow, policy.PhaseShadow.Down())
	assert.True(t, policy.PhaseAdvisory.Below(policy.PhaseSupervised))
	assert.False(t, policy.PhaseSupervised.Below(policy.PhaseSupervised))
}
