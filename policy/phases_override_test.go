package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Agent workflow's phases replace the catalog's, never above them, and
// an action's max_phase still caps.
func TestPlanWithPhasesNeverAboveTheCatalog(t *testing.T) {
	c := mustCatalog(t, testCatalog) // bot: write autonomous
	for name, tc := range map[string]struct {
		phases map[Class]Phase
		action string
		want   Phase
	}{
		"no override: the catalog's":              {nil, "scale", PhaseAutonomous},
		"lower than the catalog: the agent's":     {map[Class]Phase{ClassWrite: PhaseShadow}, "scale", PhaseShadow},
		"class not overridden: the catalog's":     {map[Class]Phase{ClassRead: PhaseShadow}, "scale", PhaseAutonomous},
		"unknown phase: ignored, the catalog's":   {map[Class]Phase{ClassWrite: "godmode"}, "scale", PhaseAutonomous},
		"the action's max_phase still caps":       {map[Class]Phase{ClassWrite: PhaseSupervised}, "capped", PhaseAdvisory},
		"resumed agent: shadow for reads as well": {map[Class]Phase{ClassRead: PhaseShadow, ClassWrite: PhaseShadow}, "read-thing", PhaseShadow},
	} {
		t.Run(name, func(t *testing.T) {
			params := map[string]any{"replicas": 2}
			if tc.action == "read-thing" {
				params = map[string]any{"path": "/x"}
			} else if tc.action == "capped" {
				params = nil
			}
			p, err := c.PlanWithPhases("bot", []Proposal{{Type: tc.action, Params: params}}, tc.phases)
			require.NoError(t, err)
			assert.Equal(t, tc.want, p.Actions[0].Decision.Phase)
		})
	}
	lower := mustCatalog(t, testCatalog)
	ag, _ := lower.Agent("bot")
	ag.Phases[ClassWrite] = PhaseAdvisory
	p, err := lower.PlanWithPhases("bot", []Proposal{{Type: "scale", Params: map[string]any{"replicas": 2}}}, map[Class]Phase{ClassWrite: PhaseAutonomous})
	require.NoError(t, err)
	assert.Equal(t, PhaseAdvisory, p.Actions[0].Decision.Phase, "an agent above the catalog's cap is capped")
}
