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

// Signing the chain head at the cycle's end retries while Vault is down,
// for up to finalSignWindow; after that the trail records that the head is
// unsigned (which `cycle audit` refuses) and the cycle keeps its result: its
// outcome never depends on the audit key. A decision's head is signed in
// one attempt: the final signature covers it anyway (the chain is
// hash-linked), so an outage must not hold the cycle's workflow task open
// (queries wait on it) before the action's own staging retries.
const finalSignWindow = 10 * time.Minute

func signOptions(final bool) workflow.LocalActivityOptions {
	if !final {
		return workflow.LocalActivityOptions{
			StartToCloseTimeout: 5 * time.Second,
			RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
		}
	}
	return workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: finalSignWindow,
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
	var a *activities.Activities
	var sig contract.HeadSignature
	err := workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, signOptions(final)), a.SignAuditHead, in).Get(ctx, &sig)
	summary := fmt.Sprintf("chain head (entry %d) signed by transit key %s version %d", head.Seq, sig.Key, sig.KeyVersion)
	if err != nil {
		workflow.GetLogger(ctx).Error("sign audit head", "seq", head.Seq, "error", err)
		sig = contract.HeadSignature{WorkflowID: in.WorkflowID, HeadSeq: in.HeadSeq, Head: in.Head, Final: final, Error: errorMessage(err)}
		summary = fmt.Sprintf("chain head (entry %d) NOT signed: %s", head.Seq, sig.Error)
	}
	c.record(ctx, contract.AuditSignature, nil, summary, sig.Data())
	return c.res.Audit
}
