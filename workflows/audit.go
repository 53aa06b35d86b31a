package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
)

// record appends an entry to the cycle's trail. data must hold only
// JSON-friendly values; it never holds a credential value.
func (c *cycle) record(ctx workflow.Context, kind string, action *int, summary string, data map[string]any) {
	c.res.Audit = contract.AppendAudit(c.res.Audit, workflow.Now(ctx), kind, action, summary, data)
}

func idx(i int) *int { return &i }
