// Package starter is the Go API agent code uses to propose cycles to Airlock
// and read their results.
package starter

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/workflows"
)

// Client starts and follows agent cycles.
type Client struct {
	tc        client.Client
	catalog   *policy.Catalog
	taskQueue string
}

// Option configures a Client.
type Option func(*Client)

// WithCatalog makes Start refuse requests the catalog rejects (unknown agent
// or action type, params that do not validate) before anything is started.
// Without it only the request's shape is checked here; the workflow always
// re-validates against the worker's catalog.
func WithCatalog(c *policy.Catalog) Option { return func(s *Client) { s.catalog = c } }

// WithTaskQueue overrides the task queue. Default: workflows.TaskQueue.
func WithTaskQueue(q string) Option { return func(s *Client) { s.taskQueue = q } }

// New returns a Client using an existing Temporal client.
func New(tc client.Client, opts ...Option) *Client {
	c := &Client{tc: tc, taskQueue: workflows.TaskQueue}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Validate checks a request as Start would, without starting anything.
func (c *Client) Validate(req workflows.CycleRequest) error {
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
func (r *Run) Get(ctx context.Context) (workflows.CycleResult, error) {
	var res workflows.CycleResult
	err := r.run.Get(ctx, &res)
	return res, err
}

// Start validates and starts a cycle. Starting the same agent and cycle id
// again returns the existing cycle instead of running it twice.
func (c *Client) Start(ctx context.Context, req workflows.CycleRequest) (*Run, error) {
	if err := c.Validate(req); err != nil {
		return nil, err
	}
	id := workflows.CycleWorkflowID(req.AgentID, req.CycleID)
	run, err := c.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                c.taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.CycleWorkflowName, req)
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
func (c *Client) RunCycle(ctx context.Context, req workflows.CycleRequest) (workflows.CycleResult, error) {
	run, err := c.Start(ctx, req)
	if err != nil {
		return workflows.CycleResult{}, err
	}
	return run.Get(ctx)
}

// Result waits for the result of a cycle by workflow id.
func (c *Client) Result(ctx context.Context, workflowID string) (workflows.CycleResult, error) {
	var res workflows.CycleResult
	err := c.tc.GetWorkflow(ctx, workflowID, "").Get(ctx, &res)
	return res, err
}

// Status returns what a cycle has done so far, running or closed.
func (c *Client) Status(ctx context.Context, workflowID string) (workflows.CycleResult, error) {
	var res workflows.CycleResult
	v, err := c.tc.QueryWorkflow(ctx, workflowID, "", workflows.QueryStatus)
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
