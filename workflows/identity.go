package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
)

// verifyOptions: verification is one Vault call (≈1 ms), run as a local
// activity like Plan so it adds no server round trip; its result is
// recorded in history. An outage is retried for a while, then the cycle
// fails closed (the agent signs and starts again).
var verifyOptions = workflow.LocalActivityOptions{
	Summary:                "verify the agent's signature",
	StartToCloseTimeout:    10 * time.Second,
	ScheduleToCloseTimeout: 2 * time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        15 * time.Second,
		NonRetryableErrorTypes: []string{contract.ErrTypeInvalidRequest},
	},
}

// identity is who a cycle's request was verified to come from. Only
// verified identities are refused as approvers of their own cycle.
type identity struct {
	signer    string // "agent:<id>"
	principal string // the signed principal, if any
}

// selves are the identities that may not decide on this cycle.
func (id *identity) selves() []string {
	out := []string{id.signer}
	if id.principal != "" && id.principal != id.signer {
		out = append(out, id.principal)
	}
	return out
}

// verify proves, before anything is planned, leased or created, that the
// request was signed by the agent it names (DESIGN invariant 9). A refusal
// is recorded, reported as a policy denial and returned as a non-retryable
// InvalidRequest naming the reason.
func (c *cycle) verify(ctx workflow.Context) error {
	req := c.req
	info := workflow.GetInfo(ctx)
	refuse := func(reason, detail string) error {
		c.record(ctx, contract.AuditIdentity, nil, "request refused: unverified: "+reason, map[string]any{
			"agent": req.AgentID, "reason": reason, "detail": detail,
		})
		policyDenial(ctx, req.AgentID, "unverified: "+reason)
		return activities.Unverified(reason, detail)
	}
	sig := req.Signature
	if sig == nil || sig.Signature == "" {
		return refuse(activities.UnverifiedUnsigned, "the request carries no signature: agent_id alone proves nothing; sign it with the agent's own Vault Transit key")
	}
	signedAt, err := time.Parse(time.RFC3339, sig.SignedAt)
	if err != nil {
		return refuse(activities.UnverifiedMalformed, fmt.Sprintf("signed_at %q is not RFC 3339", sig.SignedAt))
	}
	// The server's start time, not the worker's clock: a backlog of
	// workflow tasks does not make honest requests stale.
	if d := info.WorkflowStartTime.Sub(signedAt); d > contract.MaxSignatureSkew || d < -contract.MaxSignatureSkew {
		return refuse(activities.UnverifiedStale, fmt.Sprintf("signed at %s, cycle started at %s: more than %s apart",
			signedAt.UTC().Format(time.RFC3339), info.WorkflowStartTime.UTC().Format(time.RFC3339), contract.MaxSignatureSkew))
	}
	if want := contract.CycleWorkflowID(req.AgentID, req.CycleID); info.WorkflowExecution.ID != want {
		return refuse(activities.UnverifiedWorkflowID, fmt.Sprintf("a signed cycle runs as workflow %s, not %s", want, info.WorkflowExecution.ID))
	}
	payload, err := contract.CanonicalRequest(req)
	if err != nil {
		return refuse(activities.UnverifiedMalformed, err.Error())
	}
	var a *activities.Activities
	var out activities.VerifyOutput
	vctx := workflow.WithLocalActivityOptions(ctx, verifyOptions)
	err = workflow.ExecuteLocalActivity(vctx, a.VerifyRequest, activities.VerifyInput{
		AgentID: req.AgentID, Payload: payload, Signature: sig.Signature, KeyVersion: sig.KeyVersion, KeyHint: sig.Key,
	}).Get(ctx, &out)
	if err != nil && ctx.Err() != nil {
		return temporal.NewCanceledError()
	}
	if err != nil {
		reason, detail := activities.UnverifiedUnavailable, errorMessage(err)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == contract.ErrTypeInvalidRequest && appErr.HasDetails() {
			_ = appErr.Details(&reason)
			detail = strings.TrimPrefix(appErr.Message(), "unverified: "+reason+": ")
		}
		return refuse(reason, detail)
	}
	c.identity = &identity{signer: out.Signer, principal: req.Principal}
	c.record(ctx, contract.AuditIdentity, nil, "request verified: signed by "+out.Signer, map[string]any{
		"signer": out.Signer, "principal": req.Principal, "key": out.Key, "key_version": out.KeyVersion,
		"signature": sig.Signature, "signed_at": sig.SignedAt, "format": contract.CanonicalFormatOf(req),
	})
	return nil
}
