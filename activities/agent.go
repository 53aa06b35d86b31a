package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// AgentStateInput names the agent whose state a cycle plans with.
type AgentStateInput struct {
	AgentID string `json:"agent_id"`
}

// AgentStateOutput is the part of the agent's state a cycle plans with. It
// is recorded in the cycle's history (a local activity's marker), so a
// replay plans with the same phases.
type AgentStateOutput struct {
	Status contract.AgentStatus `json:"status"`
	// Phases are the agent's current phases, capped by the catalog's.
	Phases map[policy.Class]policy.Phase `json:"phases"`
	// Why is the reason of the last status change (who killed it and why).
	Why string `json:"why,omitempty"`
	// TrustedVersion is the agent's trusted version ("": none).
	TrustedVersion string `json:"trusted_version,omitempty"`
}

// AgentStateReader reads an agent's live state for a cycle's plan.
type AgentStateReader interface {
	AgentState(ctx context.Context, in AgentStateInput) (AgentStateOutput, error)
}

// PlanCycleOutput is a cycle's plan with the agent state it was made with.
// Plan is nil when the agent is not active: nothing is planned for it.
type PlanCycleOutput struct {
	Agent AgentStateOutput `json:"agent"`
	Plan  *policy.Plan     `json:"plan,omitempty"`
	// Role is how the request's version was treated (policy.RoleOf); a
	// canary is planned in shadow whatever the agent's phases.
	Role policy.VersionRole `json:"role,omitempty"`
}

// PlanCycle reads the agent's live state (its Agent workflow) and, if the
// agent is active, plans the cycle with the agent's phases (never above
// the catalog's). Both land in one local-activity marker of the cycle's
// history, so a replay plans with the same state.
func (a *Activities) PlanCycle(ctx context.Context, in PlanInput) (PlanCycleOutput, error) {
	if a.Catalog == nil {
		return PlanCycleOutput{}, errors.New("plan: worker has no catalog")
	}
	if _, ok := a.Catalog.Agent(in.AgentID); !ok {
		_, err := a.Plan(ctx, in) // names the problem like any refused request
		return PlanCycleOutput{}, err
	}
	var reader AgentStateReader = workflowAgents{a}
	if a.AgentStates != nil {
		reader = a.AgentStates
	}
	st, err := reader.AgentState(ctx, AgentStateInput{AgentID: in.AgentID})
	if err != nil {
		return PlanCycleOutput{}, err
	}
	out := PlanCycleOutput{Agent: st}
	if st.Status != contract.AgentActive {
		return out, nil
	}
	in.Phases = st.Phases
	if out.Role = policy.RoleOf(in.Version, st.TrustedVersion); out.Role == policy.RoleCanary {
		in.Phases = policy.CanaryPhases(st.Phases)
	}
	if out.Plan, err = a.Plan(ctx, in); err != nil {
		return PlanCycleOutput{}, err
	}
	return out, nil
}

// workflowAgents reads agents' state from their Agent workflows.
type workflowAgents struct{ a *Activities }

// AgentState reads the agent's status and phases from its Agent workflow,
// starting that workflow (seeded from the catalog) if it does not exist
// yet. A catalog whose phases or approvers changed is signalled to it. The
// phases it returns are never above the catalog's. Without a Temporal
// client it fails closed.
func (w workflowAgents) AgentState(ctx context.Context, in AgentStateInput) (AgentStateOutput, error) {
	a := w.a
	if a.Temporal == nil {
		return AgentStateOutput{}, temporal.NewNonRetryableApplicationError(
			"agent state: the worker has no Temporal client: nothing runs", contract.ErrTypeAgentUnavailable, nil)
	}
	if a.Catalog == nil {
		return AgentStateOutput{}, errors.New("agent state: worker has no catalog")
	}
	ag, ok := a.Catalog.Agent(in.AgentID)
	if !ok {
		return AgentStateOutput{}, permanent(contract.ErrTypeInvalidRequest, fmt.Errorf("unknown agent %q", in.AgentID))
	}
	seed := contract.SeedFor(ag)
	id := contract.AgentWorkflowID(ag.ID)
	v, err := a.readAgent(ctx, id)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		if err = a.startAgent(ctx, seed); err == nil {
			v, err = a.readAgent(ctx, id)
		}
	}
	if err != nil {
		return AgentStateOutput{}, fmt.Errorf("agent state %s: %w", id, err)
	}
	// The memo carries no trust settings: they count as delivered once this
	// worker has signalled them (a signal per catalog change, not per cycle).
	published := contract.AgentSeed{AgentID: ag.ID, Phases: v.Caps, Approvers: v.Approvers, Namespace: v.Namespace, Budgets: v.Budgets, Trust: seed.Trust}
	if sent, ok := a.trustSent.Load(ag.ID); !ok || !sent.(policy.Trust).Same(seed.Trust) {
		published.Trust = policy.Trust{}
	}
	if !seed.Same(published) {
		// The catalog changed: the workflow clamps its phases to the new caps
		// and takes the new approvers and trust settings. Best effort: this
		// cycle is capped below in any case. (A worker's catalog is fixed,
		// so its cycles of one agent all carry the same seed.)
		_, err, _ := a.catalogSignals.Do(ag.ID, func() (any, error) {
			if err := a.Temporal.SignalWorkflow(ctx, id, "", contract.SignalAgentCatalog, seed); err != nil {
				return nil, err
			}
			a.trustSent.Store(ag.ID, seed.Trust)
			return nil, nil
		})
		if err != nil {
			activity.GetLogger(ctx).Warn("signal catalog to agent", "agent", ag.ID, "error", err)
		}
	}
	return AgentStateOutput{Status: v.Status, Phases: ag.CappedPhases(v.Phases), Why: v.Why, TrustedVersion: v.TrustedVersion}, nil
}

// readAgent reads what the agent's workflow published in its memo (one
// DescribeWorkflowExecution, answered by the server without waiting for the
// agent's workflow task). An agent workflow from before the memo, or one
// that is not running, is queried instead.
//
// Concurrent cycles of one agent share one read: each read takes the agent
// workflow's lock on the server, so 50 cycles planning at once would queue
// behind each other. A cycle that joins a read in flight gets the state as
// of a moment before it asked, as a read of its own could.
func (a *Activities) readAgent(ctx context.Context, id string) (contract.AgentView, error) {
	ch := a.agentReads.DoChan(id, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), agentCallTimeout)
		defer cancel()
		return a.readAgentOnce(rctx, id)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return contract.AgentView{}, r.Err
		}
		return r.Val.(contract.AgentView), nil
	case <-ctx.Done():
		return contract.AgentView{}, ctx.Err()
	}
}

func (a *Activities) readAgentOnce(ctx context.Context, id string) (contract.AgentView, error) {
	d, err := a.Temporal.DescribeWorkflow(ctx, id, "")
	if err != nil {
		return contract.AgentView{}, err
	}
	if d.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		var v contract.AgentView
		if err := d.GetMemoValue(contract.AgentMemoKey, &v); err == nil && v.Status != "" {
			return v, nil
		}
	}
	st, err := a.queryAgent(ctx, id)
	return st.View(), err
}

func (a *Activities) queryAgent(ctx context.Context, id string) (contract.AgentState, error) {
	var v contract.AgentState
	val, err := a.Temporal.QueryWorkflow(ctx, id, "", contract.QueryAgentState)
	if err != nil {
		return v, err
	}
	if err := val.Get(&v); err != nil {
		return v, fmt.Errorf("decode agent state: %w", err)
	}
	if v.Status == "" {
		return v, errors.New("agent workflow is not seeded yet")
	}
	return v, nil
}

// startAgent starts the agent's workflow if it is not running. An Agent
// workflow never ends by itself (it continues as new); one that was closed
// by hand is not restarted from the catalog, which would revive a killed
// agent: cycles are refused until an operator looks (fail closed).
func (a *Activities) startAgent(ctx context.Context, seed contract.AgentSeed) error {
	_, err := a.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       contract.AgentWorkflowID(seed.AgentID),
		TaskQueue:                activity.GetInfo(ctx).TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, contract.AgentWorkflowName, contract.AgentInput{Seed: &seed})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"agent workflow %s was closed (terminated by hand?): the agent stays stopped until an operator restores it",
			contract.AgentWorkflowID(seed.AgentID)), contract.ErrTypeAgentUnavailable, err)
	}
	if err != nil {
		return fmt.Errorf("start agent workflow: %w", err)
	}
	return nil
}

// ReportCycle sends a cycle's report to its agent (the report-cycle
// signal, counted once per cycle; it also releases whatever the cycle still
// held against the agent's budgets). An agent that is not in the catalog,
// or whose workflow does not exist (an unverified request for an agent that
// never ran), has nothing to count.
func (a *Activities) ReportCycle(ctx context.Context, r contract.CycleReport) (contract.ReportCycleResult, error) {
	if a.Temporal == nil {
		return contract.ReportCycleResult{}, nil
	}
	if a.Catalog != nil {
		if _, ok := a.Catalog.Agent(r.AgentID); !ok {
			return contract.ReportCycleResult{}, nil
		}
	}
	if err := a.reports.ask(ctx, r.AgentID, r, contract.MaxReportBatch, reportsInFlight, a.reportBatch); err != nil {
		return contract.ReportCycleResult{}, err
	}
	return contract.ReportCycleResult{}, nil
}

// KillAgentInput names the agent to stop.
type KillAgentInput struct {
	AgentID string `json:"agent_id"`
	// Namespace of the agent's Jobs. Default: the catalog's.
	Namespace string `json:"namespace,omitempty"`
}

// Sweeps of the kill switch: a cycle that read "active" just before the
// kill may become visible (search attribute) or stage its Job a moment
// later, so sweeping repeats until a pass finds nothing new.
const (
	killMinPasses = 2
	killMaxPasses = 5
	killPassGap   = time.Second
	killJobsWait  = time.Minute
)

// KillAgent is the kill switch's worker half, run by the Agent workflow
// once it is marked killed (so no new cycle starts): it cancels the agent's
// running cycles (search attribute AirlockAgent), deletes its Jobs and
// Pods, revokes its Vault token tree — every action token and every lease
// under them — and waits until no Job or Pod of the agent is left.
func (a *Activities) KillAgent(ctx context.Context, in KillAgentInput) (contract.KillReport, error) {
	out := contract.KillReport{StartedAt: time.Now()}
	ns := in.Namespace
	if ns == "" && a.Catalog != nil {
		if ag, ok := a.Catalog.Agent(in.AgentID); ok {
			ns = ag.Namespace
		}
	}
	if ns == "" {
		return out, permanent(contract.ErrTypeInvalidRequest, fmt.Errorf("kill agent %s: unknown namespace", in.AgentID))
	}
	hb := startHeartbeat(ctx)
	defer hb.stop()
	log := activity.GetLogger(ctx)
	for out.Passes < killMaxPasses {
		if out.Passes > 0 {
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(killPassGap):
			}
		}
		out.Passes++
		found := 0
		var errs []error
		// The Jobs running when the sweep starts count as deleted by it even
		// when a cancelled cycle's own cleanup deletes them first: which of
		// the two gets there first is a race, the kill caused both.
		var running []string
		if a.Jobs != nil {
			names, err := a.Jobs.AgentJobs(ctx, ns, in.AgentID)
			errs = append(errs, err)
			running = names
		}
		canceled, err := a.cancelCycles(ctx, in.AgentID)
		errs = append(errs, err)
		found += addNew(&out.CyclesCanceled, canceled)
		if a.Jobs != nil {
			deleted, err := a.Jobs.DeleteAgentJobs(ctx, ns, in.AgentID)
			errs = append(errs, err)
			found += addNew(&out.JobsDeleted, append(running, deleted...))
		}
		if a.Agents != nil {
			revoked, err := a.Agents.RevokeAgent(ctx, in.AgentID)
			errs = append(errs, err)
			if n := addNew(&out.RevokedAccessors, revoked); n > 0 || out.RevokedAt.IsZero() {
				out.RevokedAt = time.Now()
				found += n
			}
		}
		if a.Jobs != nil {
			gone, err := a.waitAgentObjectsGone(ctx, ns, in.AgentID)
			errs = append(errs, err)
			if gone || out.JobsGoneAt.IsZero() {
				out.JobsGoneAt = time.Now()
			}
		}
		if err := errors.Join(errs...); err != nil {
			return out, fmt.Errorf("kill agent %s: %w", in.AgentID, err)
		}
		log.Info("kill agent: sweep", "agent", in.AgentID, "pass", out.Passes, "found", found)
		if out.Passes >= killMinPasses && found == 0 {
			break
		}
	}
	return out, nil
}

// waitAgentObjectsGone polls until no Job or Pod of the agent is left. It
// reports whether there was anything to wait for.
func (a *Activities) waitAgentObjectsGone(ctx context.Context, ns, agentID string) (bool, error) {
	deadline := time.Now().Add(killJobsWait)
	waited := false
	for {
		jobs, pods, err := a.Jobs.AgentObjects(ctx, ns, agentID)
		if err != nil {
			return waited, err
		}
		if jobs == 0 && pods == 0 {
			return waited, nil
		}
		if time.Now().After(deadline) {
			return waited, fmt.Errorf("%d jobs and %d pods of agent %s still there after %s", jobs, pods, agentID, killJobsWait)
		}
		waited = true
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cancelCycles cancels the agent's running cycles, found by their
// AirlockAgent search attribute.
func (a *Activities) cancelCycles(ctx context.Context, agentID string) ([]string, error) {
	if a.Temporal == nil {
		return nil, nil
	}
	q := fmt.Sprintf(`AirlockAgent = %q AND ExecutionStatus = "Running" AND WorkflowType = "AgentCycle"`, agentID)
	var ids []string
	var token []byte
	for {
		resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return ids, fmt.Errorf("list cycles of agent %s: %w", agentID, err)
		}
		for _, e := range resp.Executions {
			id := e.GetExecution().GetWorkflowId()
			err := a.Temporal.CancelWorkflow(ctx, id, e.GetExecution().GetRunId())
			var nf *serviceerror.NotFound
			if err != nil && !errors.As(err, &nf) {
				return ids, fmt.Errorf("cancel cycle %s: %w", id, err)
			}
			ids = append(ids, id)
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return ids, nil
		}
	}
}

// addNew appends the values not in *s yet and returns how many it added.
func addNew(s *[]string, vs []string) int {
	n := 0
	for _, v := range vs {
		if !slices.Contains(*s, v) {
			*s = append(*s, v)
			n++
		}
	}
	return n
}

// CatalogSeed returns the catalog's seed of an agent, for an Agent workflow
// started without one (by the kill switch, for an agent that never ran).
func (a *Activities) CatalogSeed(_ context.Context, in AgentStateInput) (contract.AgentSeed, error) {
	if a.Catalog == nil {
		return contract.AgentSeed{}, errors.New("catalog seed: worker has no catalog")
	}
	ag, ok := a.Catalog.Agent(in.AgentID)
	if !ok {
		return contract.AgentSeed{}, permanent(contract.ErrTypeInvalidRequest, fmt.Errorf("unknown agent %q", in.AgentID))
	}
	return contract.SeedFor(ag), nil
}
