package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
)

// record appends an entry to the cycle's trail. data must hold only
// JSON-friendly values; it never holds a credential value.
func (c *cycle) record(ctx workflow.Context, kind string, action *int, summary string, data map[string]any) {
	c.res.Audit = contract.AppendAudit(c.res.Audit, workflow.Now(ctx), kind, action, summary, data)
}

func idx(i int) *int { return &i }

// Signing the chain head retries while Vault is down: a decision waits up
// to decisionSignWindow, the cycle's end up to finalSignWindow. After that
// the trail records that the head is unsigned and the cycle goes on: its
// outcome never depends on the audit key. A decision's head left unsigned
// is covered by the final signature (the chain is hash-linked), so the
// decision does not hold up the action (which retries staging while Vault
// is down); a final head left unsigned is what `cycle audit` refuses.
const (
	decisionSignWindow = 10 * time.Second
	finalSignWindow    = 10 * time.Minute
)

func signOptions(window time.Duration) workflow.LocalActivityOptions {
	return workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: window,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: []string{activities.ErrTypeAuditUnsigned},
		},
	}
}

// signHead has the audit key sign the trail's current head and records the
// signature (or why there is none) as the next entry, so an export carries
// it. It returns the trail.
func (c *cycle) signHead(ctx workflow.Context, final bool) []contract.AuditEntry {
	n := len(c.res.Audit)
	if n == 0 {
		return c.res.Audit
	}
	if ctx.Err() != nil {
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	head := c.res.Audit[n-1]
	in := activities.SignHeadInput{WorkflowID: c.res.WorkflowID, HeadSeq: head.Seq, Head: head.Hash, Final: final}
	window := decisionSignWindow
	if final {
		window = finalSignWindow
	}
	var a *activities.Activities
	var sig contract.HeadSignature
	err := workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, signOptions(window)), a.SignAuditHead, in).Get(ctx, &sig)
	summary := fmt.Sprintf("chain head (entry %d) signed by transit key %s version %d", head.Seq, sig.Key, sig.KeyVersion)
	if err != nil {
		workflow.GetLogger(ctx).Error("sign audit head", "seq", head.Seq, "error", err)
		sig = contract.HeadSignature{WorkflowID: in.WorkflowID, HeadSeq: in.HeadSeq, Head: in.Head, Final: final, Error: errorMessage(err)}
		summary = fmt.Sprintf("chain head (entry %d) NOT signed: %s", head.Seq, sig.Error)
	}
	c.record(ctx, contract.AuditSignature, nil, summary, sig.Data())
	return c.res.Audit
}
