package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// noteRole records how the request's version was treated. A canary was
// planned in shadow (PlanCycle, policy.CanaryPhases): whatever the agent
// earned, its writes are dry runs with read-only credentials. From version
// 1 of "canary-version" its shadow proposals post no Slack message: its
// evidence is whether it agrees with the trusted version, not feedback,
// and a runtime sending every input to both versions would double the
// messages humans read.
func (c *cycle) noteRole(ctx workflow.Context, out activities.PlanCycleOutput) {
	c.role = out.Role
	if c.req.Version == "" && out.Role != policy.RoleCanary {
		return
	}
	c.record(ctx, contract.AuditAgent, nil, "version "+orNone(c.req.Version)+": "+string(out.Role), map[string]any{
		"version": c.req.Version, "correlation_id": c.req.CorrelationID, "role": out.Role, "trusted_version": out.Agent.TrustedVersion,
	})
	if out.Role == policy.RoleCanary {
		c.canaryQuiet = c.consolidated || workflow.GetVersion(ctx, "canary-version", workflow.DefaultVersion, 1) >= 1
	}
}

func orNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

// proposed are the planned actions as pairing compares them.
func (c *cycle) proposed() []contract.ProposedAction {
	if c.plan == nil {
		return nil
	}
	out := make([]contract.ProposedAction, 0, len(c.plan.Actions))
	for _, a := range c.plan.Actions {
		out = append(out, contract.ProposedAction{Type: a.Type, Hash: a.EffectHash()})
	}
	return out
}

// versionReport adds the cycle's version, pairing and canary status to its
// report.
func (c *cycle) versionReport(r *contract.CycleReport) {
	r.Version, r.CorrelationID, r.Canary = c.req.Version, c.req.CorrelationID, c.role == policy.RoleCanary
	if r.CorrelationID != "" {
		r.Proposed = c.proposed()
	}
}
