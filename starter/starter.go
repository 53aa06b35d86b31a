// Package starter is the Go API agent code uses to propose cycles to Airlock
// and read their results.
package starter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Client starts and follows agent cycles.
type Client struct {
	tc        client.Client
	catalog   *policy.Catalog
	taskQueue string
	signer    Signer
	now       func() time.Time
	// tracerProvider receives Start's span (trace.go). Nil: the global one.
	tracerProvider trace.TracerProvider
}

// Signer signs bytes as an agent with the agent's own Vault Transit key.
// *vault.Signer implements it; give it the token the agent got by logging
// in to Vault as itself (vault.Login(...).Signer() or vault.NewSigner).
type Signer interface {
	Sign(ctx context.Context, agentID string, data []byte) (contract.Signature, error)
}

// Option configures a Client.
type Option func(*Client)

// WithCatalog makes Start refuse requests the catalog rejects (unknown agent
// or action type, params that do not validate) before anything is started.
// Without it only the request's shape is checked here; the workflow always
// re-validates against the worker's catalog.
func WithCatalog(c *policy.Catalog) Option { return func(s *Client) { s.catalog = c } }

// WithTaskQueue overrides the task queue. Default: contract.TaskQueue.
func WithTaskQueue(q string) Option { return func(s *Client) { s.taskQueue = q } }

// WithSigner makes Start sign every request that carries no signature yet,
// as its agent_id, with s (see SignRequest). Without a signer, requests
// must come signed: the workflow refuses unsigned ones.
func WithSigner(s Signer) Option { return func(c *Client) { c.signer = s } }

// New returns a Client using an existing Temporal client.
func New(tc client.Client, opts ...Option) *Client {
	c := &Client{tc: tc, taskQueue: contract.TaskQueue, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Validate checks a request as Start would, without starting anything.
func (c *Client) Validate(req contract.CycleRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if c.catalog != nil {
		if _, err := c.catalog.Plan(req.AgentID, req.Actions); err != nil {
			return err
		}
	}
	return nil
}

// Run is a started cycle.
type Run struct {
	WorkflowID string
	RunID      string
	run        client.WorkflowRun
}

// Get waits for the cycle to finish and returns its result.
func (r *Run) Get(ctx context.Context) (contract.CycleResult, error) {
	var res contract.CycleResult
	err := r.run.Get(ctx, &res)
	return res, err
}

// SignRequest signs req as req.AgentID: it sets signed_at to at (UTC,
// whole seconds), signs contract.CanonicalRequest of the result with the
// agent's Transit key and returns the request carrying the signature.
func SignRequest(ctx context.Context, s Signer, req contract.CycleRequest, at time.Time) (contract.CycleRequest, error) {
	req.Signature = &contract.RequestSignature{SignedAt: at.UTC().Truncate(time.Second).Format(time.RFC3339)}
	data, err := contract.CanonicalRequest(req)
	if err != nil {
		return req, fmt.Errorf("sign request: %w", err)
	}
	sig, err := s.Sign(ctx, req.AgentID, data)
	if err != nil {
		return req, fmt.Errorf("sign request: %w", err)
	}
	req.Signature.Key, req.Signature.KeyVersion, req.Signature.Signature = sig.Key, sig.KeyVersion, sig.Value
	return req, nil
}

// Start validates, signs (WithSigner) and starts a cycle. Starting the same
// agent and cycle id again returns the existing cycle instead of running
// it twice. The start is a span, child of the span in ctx (the agent's: see
// ContextWithTraceparent), with the request's thoughts as events.
func (c *Client) Start(ctx context.Context, req contract.CycleRequest) (_ *Run, err error) {
	ctx, span := c.startSpan(ctx, req)
	defer func() { endSpan(span, err) }()
	if err := c.Validate(req); err != nil {
		return nil, err
	}
	if c.signer != nil && req.Signature == nil {
		var err error
		if req, err = SignRequest(ctx, c.signer, req, c.now()); err != nil {
			return nil, err
		}
	}
	id := contract.CycleWorkflowID(req.AgentID, req.CycleID)
	run, err := c.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                c.taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            StaticSummary(req),
		StaticDetails:            StaticDetails(req),
	}, contract.CycleWorkflowName, req)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		// Already ran to completion: hand back that run.
		run = c.tc.GetWorkflow(ctx, id, "")
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("start cycle %s: %w", id, err)
	}
	return &Run{WorkflowID: id, RunID: run.GetRunID(), run: run}, nil
}

// RunCycle starts a cycle and waits for its result.
func (c *Client) RunCycle(ctx context.Context, req contract.CycleRequest) (contract.CycleResult, error) {
	run, err := c.Start(ctx, req)
	if err != nil {
		return contract.CycleResult{}, err
	}
	return run.Get(ctx)
}

// Result waits for the result of a cycle by workflow id.
func (c *Client) Result(ctx context.Context, workflowID string) (contract.CycleResult, error) {
	var res contract.CycleResult
	err := c.tc.GetWorkflow(ctx, workflowID, "").Get(ctx, &res)
	return res, err
}

// Status returns what a cycle has done so far, running or closed.
func (c *Client) Status(ctx context.Context, workflowID string) (contract.CycleResult, error) {
	var res contract.CycleResult
	v, err := c.tc.QueryWorkflow(ctx, workflowID, "", contract.QueryStatus)
	if err != nil {
		return res, fmt.Errorf("query cycle %s: %w", workflowID, err)
	}
	if err := v.Get(&res); err != nil {
		return res, fmt.Errorf("decode cycle %s: %w", workflowID, err)
	}
	return res, nil
}

// Cancel asks a running cycle to stop; its Jobs are deleted and its
// credentials revoked.
func (c *Client) Cancel(ctx context.Context, workflowID string) error {
	return c.tc.CancelWorkflow(ctx, workflowID, "")
}

// RefusedError is a decision the workflow's validator refused (not an
// approver, own request, stale hash, already closed). Nothing was recorded.
type RefusedError struct {
	Reason  string
	errType string
}

func (e *RefusedError) Error() string { return "refused: " + e.Reason }

// Refused marks the error as a refusal, for HTTP handlers mapping it to 403.
func (e *RefusedError) Refused() bool { return true }

// Decide sends a human decision to a cycle through the validated Update.
// Agree/Disagree on a shadow proposal go to the agent's workflow, which
// keeps shadow proposals open to feedback after their cycle ended (cycles
// from before that keep it themselves, and get it there).
func (c *Client) Decide(ctx context.Context, workflowID string, d contract.Decision) (contract.DecisionResult, error) {
	if d.Kind == contract.DecisionAgree || d.Kind == contract.DecisionDisagree {
		if agent, ok := contract.AgentOfCycle(workflowID); ok {
			res, err := c.update(ctx, contract.AgentWorkflowID(agent), contract.UpdateFeedback,
				contract.FeedbackDecision{CycleWorkflowID: workflowID, Decision: d})
			var refused *RefusedError
			if !errors.As(err, &refused) || refused.errType != contract.ErrTypeUnknownProposal {
				return res, err
			}
		}
	}
	return c.update(ctx, workflowID, contract.UpdateDecide, d)
}

// update runs a validated decision Update and waits for its answer.
func (c *Client) update(ctx context.Context, workflowID, name string, arg any) (contract.DecisionResult, error) {
	var res contract.DecisionResult
	h, err := c.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			return res, &RefusedError{Reason: appErr.Message(), errType: appErr.Type()}
		}
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return res, &RefusedError{Reason: workflowID + " is not running"}
		}
		return res, fmt.Errorf("decide on %s: %w", workflowID, err)
	}
	return res, nil
}

// Pending lists the actions of one cycle waiting for humans.
func (c *Client) Pending(ctx context.Context, workflowID string) ([]contract.PendingAction, error) {
	v, err := c.tc.QueryWorkflow(ctx, workflowID, "", contract.QueryPending)
	if err != nil {
		return nil, fmt.Errorf("query pending of %s: %w", workflowID, err)
	}
	var out []contract.PendingAction
	if err := v.Get(&out); err != nil {
		return nil, fmt.Errorf("decode pending of %s: %w", workflowID, err)
	}
	return out, nil
}

// AllPending lists what waits for humans across running cycles, highest
// risk first, then oldest cycle first (as Waiting orders cycles).
func (c *Client) AllPending(ctx context.Context) ([]contract.PendingAction, error) {
	type pending struct {
		contract.PendingAction
		started time.Time
	}
	var all []pending
	var token []byte
	for {
		resp, err := c.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", contract.CycleWorkflowName),
			NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list cycles: %w", err)
		}
		for _, e := range resp.Executions {
			p, err := c.Pending(ctx, e.Execution.WorkflowId)
			if err != nil {
				continue // closed meanwhile
			}
			for _, a := range p {
				all = append(all, pending{a, e.GetStartTime().AsTime()})
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	slices.SortStableFunc(all, func(a, b pending) int {
		return policy.CompareUrgency(a.Action.Risk, a.started, b.Action.Risk, b.started)
	})
	out := make([]contract.PendingAction, len(all))
	for i, p := range all {
		out[i] = p.PendingAction
	}
	return out, nil
}

// Audit returns a cycle's audit trail: from its result once closed (no
// worker needed), by query while it runs.
func (c *Client) Audit(ctx context.Context, workflowID string) ([]contract.AuditEntry, error) {
	desc, err := c.tc.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return nil, fmt.Errorf("describe cycle %s: %w", workflowID, err)
	}
	if desc.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		res, err := c.Result(ctx, workflowID)
		if err != nil {
			return nil, fmt.Errorf("read cycle %s: %w", workflowID, err)
		}
		return res.Audit, nil
	}
	v, err := c.tc.QueryWorkflow(ctx, workflowID, "", contract.QueryAudit)
	if err != nil {
		return nil, fmt.Errorf("query audit of %s: %w", workflowID, err)
	}
	var out []contract.AuditEntry
	if err := v.Get(&out); err != nil {
		return nil, fmt.Errorf("decode audit of %s: %w", workflowID, err)
	}
	return out, nil
}

// CycleSummary is one line of List.
type CycleSummary struct {
	WorkflowID string
	Status     string
	Agent      string
	Phase      string
	Outcome    string
	Risk       string
	StartTime  time.Time
}

// List finds cycles with a Temporal visibility query over the Airlock
// search attributes, e.g. `AirlockAgent="x" AND AirlockOutcome="denied"`.
func (c *Client) List(ctx context.Context, query string, limit int) ([]CycleSummary, error) {
	q := fmt.Sprintf("WorkflowType = '%s'", contract.CycleWorkflowName)
	if strings.TrimSpace(query) != "" {
		q += " AND (" + query + ")"
	}
	var out []CycleSummary
	var token []byte
	for {
		resp, err := c.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list cycles: %w", err)
		}
		for _, e := range resp.Executions {
			s := CycleSummary{
				WorkflowID: e.Execution.WorkflowId,
				Status:     strings.ToLower(strings.TrimPrefix(e.Status.String(), "WORKFLOW_EXECUTION_STATUS_")),
				StartTime:  e.StartTime.AsTime(),
			}
			sa := e.GetSearchAttributes().GetIndexedFields()
			for name, dst := range map[string]*string{"AirlockAgent": &s.Agent, "AirlockPhase": &s.Phase, "AirlockOutcome": &s.Outcome, "AirlockRisk": &s.Risk} {
				if p, ok := sa[name]; ok {
					_ = converter.GetDefaultDataConverter().FromPayload(p, dst)
				}
			}
			out = append(out, s)
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return out, nil
		}
	}
}
