package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
)

// rollbackIndexOffset keeps a rollback's Job name apart from its action's.
const rollbackIndexOffset = 10000

// Activity options, declared once. Staging and release retry with backoff
// for as long as Vault or the apiserver are down: nothing runs without
// credentials, and a lease is always revoked in the end.
var (
	planOptions = workflow.LocalActivityOptions{
		Summary:             "plan against the catalog",
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{contract.ErrTypeInvalidRequest},
		},
	}
	// Staging and release heartbeat (activities.heartbeat): a worker that
	// dies in them is noticed, and the step retried, within seconds.
	stageOptions = workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		HeartbeatTimeout:       10 * time.Second,
		ScheduleToCloseTimeout: 30 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: []string{contract.ErrTypeInvalidAction, activities.ErrTypeJobConflict},
		},
	}
	// As local activities (version 4) the same bounds hold; a dead worker's
	// step is retried by the worker that takes over the workflow task.
	stageLocalOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout:    stageOptions.StartToCloseTimeout,
		ScheduleToCloseTimeout: stageOptions.ScheduleToCloseTimeout,
		RetryPolicy:            stageOptions.RetryPolicy,
	}
	releaseLocalOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout:    releaseOptions.StartToCloseTimeout,
		ScheduleToCloseTimeout: releaseOptions.ScheduleToCloseTimeout,
		RetryPolicy:            releaseOptions.RetryPolicy,
	}
	releaseOptions = workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		HeartbeatTimeout:       10 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	}
)

// jobFailedPrefix starts the error of an action whose Job ran and failed.
const jobFailedPrefix = "job failed: "

// step runs a short cycle step (stage, dry-run, release): a local activity
// in cycles of version 4, a heartbeating activity before. The summary is
// what the Temporal UI shows for it.
func (c *cycle) step(ctx workflow.Context, summary string, opts workflow.ActivityOptions, local workflow.LocalActivityOptions, fn, arg any) workflow.Future {
	opts.Summary, local.Summary = summary, summary
	if c.localSteps {
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, local), fn, arg)
	}
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), fn, arg)
}

// runOptions gives a Job its deadline plus time to start and report.
func runOptions(deadline time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: deadline + 2*time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    10,
		},
	}
}

// AgentCycle runs one agent reasoning cycle: it validates the proposals
// against the catalog, then handles each action as the trust model says.
// Actions run in order; after a failure or a denial the rest are skipped.
// Its metrics go through the SDK's metrics handler (metrics.go).
func AgentCycle(ctx workflow.Context, req contract.CycleRequest) (res contract.CycleResult, err error) {
	info := workflow.GetInfo(ctx)
	c := &cycle{req: req, gates: map[int]*gate{}}
	c.res = contract.CycleResult{WorkflowID: info.WorkflowExecution.ID, AgentID: req.AgentID, CycleID: req.CycleID}
	if err := workflow.SetQueryHandler(ctx, contract.QueryStatus, func() (contract.CycleResult, error) { return c.res, nil }); err != nil {
		return c.res, err
	}
	if err := workflow.SetQueryHandler(ctx, contract.QueryAudit, func() ([]contract.AuditEntry, error) { return c.res.Audit, nil }); err != nil {
		return c.res, err
	}
	if err := c.registerHandlers(ctx); err != nil {
		return c.res, err
	}
	if err := req.Validate(); err != nil {
		policyDenial(ctx, req.AgentID, "invalid request")
		return c.res, temporal.NewNonRetryableApplicationError(err.Error(), contract.ErrTypeInvalidRequest, nil)
	}

	c.record(ctx, contract.AuditCycle, nil, "cycle started", map[string]any{"agent": req.AgentID, "cycle": req.CycleID, "principal": req.Principal})
	for _, t := range req.Thoughts {
		c.record(ctx, contract.AuditThought, nil, t.Content, map[string]any{"step": t.Step, "confidence": t.Confidence})
	}
	for i, p := range req.Actions {
		c.record(ctx, contract.AuditProposal, idx(i), p.Type, map[string]any{"params": p.Params, "rationale": p.Rationale})
	}
	// Only a verified agent gets a plan, a lease or a Job (invariant 9).
	// Cycles started before verification existed replay without it.
	// Version 2 (same change id, so no extra marker in history) also posts
	// and edits Slack messages as local activities: one marker each
	// instead of three events and a workflow task.
	// Version 3 (same change id again) plans with the agent's live state
	// (its Agent workflow): a killed or suspended agent's cycles are
	// refused, phases come from the agent, the outcome is reported back
	// and autonomous writes are announced.
	// Version 4 (same change id) stages, dry-runs and releases as local
	// activities: each is a short call the worker makes inside the cycle's
	// workflow task, so a single-action cycle takes two workflow tasks
	// instead of four. A worker that dies in one is replaced when the
	// workflow task times out (seconds); every step is idempotent.
	// Version 5 (same change id) signs the audit trail's head with the
	// Transit audit key at each decision and at the end (audit.go), and
	// sends the report to the agent while the final signature is made.
	// Version 6 (same change id) implies the latest of the cycle's other
	// changes ("shadow-feedback-workflow", "canary-version") instead of
	// asking for each (a marker and a search-attribute upsert apiece), and
	// a cycle that only dry-runs sets its search attributes once, at the
	// end: it ends in the workflow task that planned it, so a "running"
	// value would never be seen.
	// (Every new change id costs each cycle a marker and a search-attribute
	// upsert, so the cycle's changes share this one.)
	v := workflow.GetVersion(ctx, "verified-identity", workflow.DefaultVersion, 6)
	c.localNotices = v >= 2
	c.localSteps = v >= 4
	c.agentState = v >= 3
	c.signing = v >= 5
	c.consolidated = v >= 6
	if c.agentState && !c.signing {
		defer func() { c.reportToAgent(ctx, err) }()
	}
	if c.signing {
		defer func() {
			var report workflow.Future
			if c.agentState {
				report = c.startReport(ctx, err)
			}
			res.Audit = c.signHead(ctx, true)
			if report != nil {
				c.awaitReport(ctx, report)
			}
		}()
	}
	if v >= 1 {
		if err := c.verify(ctx); err != nil {
			return c.res, err
		}
	}

	var plan policy.Plan
	if c.agentState {
		if plan, err = c.planForAgent(ctx); err != nil {
			return c.res, err
		}
	} else {
		var a *activities.Activities
		lctx := workflow.WithLocalActivityOptions(ctx, planOptions)
		if err := workflow.ExecuteLocalActivity(lctx, a.Plan, activities.PlanInput{AgentID: req.AgentID, Actions: req.Actions}).Get(ctx, &plan); err != nil {
			c.refusePlan(ctx, err)
			return c.res, err
		}
	}
	c.plan = &plan
	for _, act := range plan.Actions {
		c.record(ctx, contract.AuditPolicy, idx(act.Index), act.Decision.Rule, map[string]any{
			"mode": act.Decision.Mode, "phase": act.Decision.Phase, "approvals": act.Decision.Approvals,
			"risk": act.Risk, "hash": act.Hash, "image": act.Image, "command": act.Command,
		})
	}
	if !c.consolidated || !c.plan.OnlyDryRuns() {
		c.upsertSearchAttributes(ctx, outcomeRunning)
	}

	// The outcome stays empty ("running" to the status query) until the end.
	outcome := contract.OutcomeSucceeded
	stop := false
	for _, act := range plan.Actions {
		if stop {
			c.res.Actions = append(c.res.Actions, contract.ActionResult{Index: act.Index, Type: act.Type, Decision: act.Decision, Hash: act.Hash, Outcome: contract.OutcomeSkipped})
			c.record(ctx, contract.AuditResult, idx(act.Index), act.Type+": skipped after an earlier failure or denial", map[string]any{"outcome": contract.OutcomeSkipped})
			continue
		}
		r := c.handleAction(ctx, act)
		c.res.Actions = append(c.res.Actions, r)
		switch r.Outcome {
		case contract.OutcomeFailed:
			outcome, stop = contract.OutcomeFailed, true
		case contract.OutcomeDenied:
			outcome, stop = contract.OutcomeDenied, true
		}
		if ctx.Err() != nil {
			c.finish(ctx, "canceled")
			return c.res, temporal.NewCanceledError()
		}
	}
	c.res.Outcome = outcome
	c.finish(ctx, string(outcome))
	return c.res, nil
}

// refusePlan records a request the catalog refused.
func (c *cycle) refusePlan(ctx workflow.Context, err error) {
	c.record(ctx, contract.AuditPolicy, nil, "request refused", map[string]any{"error": errorMessage(err)})
	policyDenial(ctx, c.req.AgentID, "invalid request")
}

// finish records the end of the cycle and makes it findable by outcome.
func (c *cycle) finish(ctx workflow.Context, outcome string) {
	c.record(ctx, contract.AuditCycle, nil, "cycle finished: "+outcome, map[string]any{"outcome": outcome})
	if ctx.Err() != nil {
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	phase := c.upsertSearchAttributes(ctx, outcome)
	cycleFinished(ctx, c.plan.AgentID, phase, outcome)
}

// Search attributes that make cycles filterable in the Temporal UI.
var (
	saAgent   = temporal.NewSearchAttributeKeyKeyword("AirlockAgent")
	saPhase   = temporal.NewSearchAttributeKeyKeyword("AirlockPhase")
	saOutcome = temporal.NewSearchAttributeKeyKeyword("AirlockOutcome")
	saRisk    = temporal.NewSearchAttributeKeyKeyword("AirlockRisk")
)

// upsertSearchAttributes sets agent, phase (of the cycle's least trusted
// action), highest risk and outcome. The server must have them registered
// (airlock dev does; see README).
func (c *cycle) upsertSearchAttributes(ctx workflow.Context, outcome string) string {
	phase, risk := policy.Phase(""), policy.RiskLow
	for _, a := range c.plan.Actions {
		if phase == "" {
			phase = a.Decision.Phase
		}
		phase = phase.Min(a.Decision.Phase)
		risk = risk.Max(a.Risk)
	}
	err := workflow.UpsertTypedSearchAttributes(ctx,
		saAgent.ValueSet(c.plan.AgentID), saPhase.ValueSet(string(phase)),
		saRisk.ValueSet(string(risk)), saOutcome.ValueSet(outcome))
	if err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
	return string(phase)
}

// Values of AirlockOutcome before a cycle ends.
const (
	outcomeRunning = "running"
	// outcomeWaiting marks a running cycle whose action waits for a
	// human (approval or veto window).
	outcomeWaiting = "waiting"
)

// setOutcomeAttribute updates AirlockOutcome alone, on a disconnected
// context so a cancelled wait still clears "waiting".
func (c *cycle) setOutcomeAttribute(ctx workflow.Context, v string) {
	if ctx.Err() != nil {
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, saOutcome.ValueSet(v)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
}

// handleAction applies the policy decision to one action, as the trust
// table reads: run it (read actions; autonomous writes), only dry-run it
// (shadow), or gate it on humans (advisory approval, supervised veto).
func (c *cycle) handleAction(ctx workflow.Context, act policy.RenderedAction) contract.ActionResult {
	switch act.Decision.Mode {
	case policy.ModeRun:
		return c.run(ctx, act)
	case policy.ModeWouldDo:
		return c.shadow(ctx, act)
	case policy.ModeApprove, policy.ModeVeto:
		return c.gated(ctx, act)
	}
	// Unknown mode: fail closed.
	r := contract.ActionResult{Index: act.Index, Type: act.Type, Decision: act.Decision, Hash: act.Hash}
	r.Outcome, r.Error = contract.OutcomeDenied, fmt.Sprintf("unknown mode %q", act.Decision.Mode)
	return r
}

// run executes an action the policy lets run; an autonomous failure runs
// its rollback, and humans hear about autonomous writes after the fact.
func (c *cycle) run(ctx workflow.Context, act policy.RenderedAction) contract.ActionResult {
	r := c.execute(ctx, act)
	if r.Outcome == contract.OutcomeFailed && act.Rollback != nil && act.Decision.Phase == policy.PhaseAutonomous && ctx.Err() == nil {
		rb := *act.Rollback
		rb.Index = act.Index + rollbackIndexOffset
		c.record(ctx, contract.AuditPolicy, idx(act.Index), "autonomous failure: running rollback "+rb.Type, map[string]any{"rollback": rb.Type, "hash": rb.Hash})
		rr := c.execute(ctx, rb)
		r.Rollback = &rr
	}
	if c.agentState && act.Class == policy.ClassWrite && act.Decision.Phase == policy.PhaseAutonomous {
		c.notifyDone(ctx, act, r)
	}
	return r
}

// shadow never runs or leases: it asks the apiserver whether it would have
// admitted the Job, records it, and invites feedback.
func (c *cycle) shadow(ctx workflow.Context, act policy.RenderedAction) contract.ActionResult {
	plan := c.plan
	base := contract.ActionResult{Index: act.Index, Type: act.Type, Decision: act.Decision, Hash: act.Hash}
	base.Outcome, base.Rendered = contract.OutcomeWouldDo, &act
	var dry activities.DryRunOutput
	var a *activities.Activities
	wfID := workflow.GetInfo(ctx).WorkflowExecution.ID
	if err := c.step(ctx, actionSummary("dry-run", act), stageOptions, stageLocalOptions, a.DryRunAction, activities.StageInput{
		WorkflowID: wfID, AgentID: plan.AgentID, Namespace: plan.Namespace, Action: act,
	}).Get(ctx, &dry); err != nil {
		base.DryRun = "unknown: " + errorMessage(err)
	} else if dry.Admitted {
		base.DryRun = "admitted"
	} else {
		base.DryRun = "rejected: " + dry.Reason
	}
	c.record(ctx, contract.AuditResult, idx(act.Index), "would do (shadow): dry-run "+base.DryRun, map[string]any{"outcome": base.Outcome, "dry_run": base.DryRun})
	if c.canaryQuiet {
		return base
	}
	// Feedback (Agree/Disagree) can never make anything run, and it
	// outlives this cycle, which ends at once. Version 2: the message is
	// posted here and the proposal goes to the agent's workflow with the
	// cycle's report, where feedback lands as evidence (agent_feedback.go).
	// Cycles started before keep, on replay, a ShadowFeedback child
	// workflow (version 1) or an in-cycle gate (default).
	feedback := workflow.Version(2)
	if !c.consolidated {
		feedback = workflow.GetVersion(ctx, "shadow-feedback-workflow", workflow.DefaultVersion, 2)
	}
	switch feedback {
	case workflow.DefaultVersion:
		g := &gate{act: act, notice: contract.NoticeShadow, status: statusRecorded}
		c.gates[act.Index] = g
		c.notify(ctx, g)
	case 1:
		if id, err := c.startFeedback(ctx, act); err != nil {
			workflow.GetLogger(ctx).Warn("start shadow feedback", "action", act.Index, "error", err)
		} else {
			base.FeedbackWorkflowID = id
		}
	default:
		until := workflow.Now(ctx).Add(time.Duration(plan.ApprovalTimeout))
		c.notify(ctx, &gate{act: act, notice: contract.NoticeShadow, status: statusRecorded, closed: true, deadline: until})
		c.shadowed = append(c.shadowed, contract.ShadowProposal{
			WorkflowID: c.res.WorkflowID, Index: act.Index, Type: act.Type, Class: act.Class, Hash: act.Hash,
			Selves: c.selves(), Until: until,
		})
	}
	return base
}

// gated waits for humans: an approval (advisory, or outside bounds) or a
// veto window (supervised, inside bounds). Approved or unvetoed, it runs;
// denied, stopped, expired or over budget, nothing is leased or created.
func (c *cycle) gated(ctx workflow.Context, act policy.RenderedAction) contract.ActionResult {
	plan := c.plan
	base := contract.ActionResult{Index: act.Index, Type: act.Type, Decision: act.Decision, Hash: act.Hash}
	notice, needed, window := contract.NoticeApproval, max(act.Decision.Approvals, 1), time.Duration(plan.ApprovalTimeout)
	if act.Decision.Mode == policy.ModeVeto {
		notice, needed, window = contract.NoticeVeto, 0, time.Duration(plan.VetoWindow)
	}
	waitStart := workflow.Now(ctx)
	g, ref := c.await(ctx, act, notice, needed, window)
	if c.signing {
		c.signHead(ctx, false)
	}
	decisions := slices.Clone(g.decisions)
	if g.refusal == nil {
		approvalWait(ctx, plan.AgentID, workflow.Now(ctx).Sub(waitStart), g.status)
	}
	switch g.status {
	case statusApproved, statusPassed:
		c.settle(ctx, g, ref, "running")
		r := c.execute(ctx, act)
		r.Decisions = decisions
		clickToRun(ctx, plan.AgentID, g.status, decisions, r)
		return r
	}
	c.settle(ctx, g, ref, "")
	base.Outcome, base.Decisions = contract.OutcomeDenied, decisions
	base.Error = denialMessage(g, window)
	if g.refusal != nil {
		base.Budget = g.refusal.Budget
		c.refuse(ctx, act, base.Error, g.refusal)
		return base
	}
	c.record(ctx, contract.AuditResult, idx(act.Index), base.Error, map[string]any{"outcome": base.Outcome, "status": g.status})
	policyDenial(ctx, plan.AgentID, g.status)
	return base
}

func denialMessage(g *gate, window time.Duration) string {
	var by string
	if n := len(g.decisions); n > 0 {
		by = " by " + g.decisions[n-1].Approver
	}
	switch g.status {
	case statusExpired:
		return fmt.Sprintf("no decision within %s: a timeout is a denial", window)
	case statusStopped:
		return "stopped" + by + " during the veto window"
	case statusDenied:
		return "denied" + by
	case statusRefused:
		return g.refusalMessage
	}
	return g.status
}

// execute stages, runs and releases one action. Release runs on every path,
// on a disconnected context so cancellation cannot skip revocation.
func (c *cycle) execute(ctx workflow.Context, act policy.RenderedAction) (r contract.ActionResult) {
	var a *activities.Activities
	plan := c.plan
	wfID := workflow.GetInfo(ctx).WorkflowExecution.ID
	r = contract.ActionResult{Index: act.Index, Type: act.Type, Decision: act.Decision, Hash: act.Hash}
	job := contract.JobRef{Namespace: plan.Namespace, Name: k8s.JobName(wfID, act.Index)}
	r.Job = &job

	var staged activities.StageOutput
	defer func() {
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		in := activities.ReleaseInput{
			Namespace: job.Namespace, JobName: job.Name,
			LeaseAccessor: staged.LeaseAccessor, DBLeaseID: staged.DBLeaseID, DeleteJob: ctx.Err() != nil,
		}
		// A refused action holds nothing to give back; the cycle's last
		// step's hold is given back by the report to the agent that follows
		// at once (since version 5: one agent workflow task less per cycle).
		if r.Budget == "" && !(c.signing && c.lastStep(ctx, act)) {
			in.AgentID, in.WorkflowID, in.Index = plan.AgentID, wfID, act.Index
		}
		var out activities.ReleaseOutput
		if err := c.step(dctx, actionSummary("release", act), releaseOptions, releaseLocalOptions, a.ReleaseAction, in).Get(dctx, &out); err != nil {
			workflow.GetLogger(ctx).Error("release action", "job", job.Name, "error", err)
			if r.Error == "" {
				r.Error = "release: " + err.Error()
			}
		} else if out.RevokedAccessor != "" {
			c.record(dctx, contract.AuditLease, idx(act.Index), "credential revoked", map[string]any{"accessor": out.RevokedAccessor})
		}
		fields := map[string]any{"outcome": r.Outcome, "exit_code": r.ExitCode, "output": clip(r.Output, 1024), "error": r.Error}
		if r.Budget != "" {
			fields["budget"] = r.Budget
		}
		c.record(dctx, contract.AuditResult, idx(act.Index), fmt.Sprintf("%s: %s", act.Type, r.Outcome), fields)
	}()

	err := c.step(ctx, actionSummary("stage", act), stageOptions, stageLocalOptions, a.StageAction, activities.StageInput{
		WorkflowID: wfID, AgentID: plan.AgentID, Namespace: plan.Namespace, Action: act,
		Compensation: act.Index >= rollbackIndexOffset,
	}).Get(ctx, &staged)
	if be, msg := budgetRefusal(err); be != nil {
		// Over budget: refused, not queued; nothing was created or leased.
		r.Outcome, r.Error, r.Budget = contract.OutcomeDenied, msg, be.Budget
		policyDenial(ctx, plan.AgentID, "budget "+be.Budget)
		return r
	}
	if err != nil {
		r.Outcome, r.Error = contract.OutcomeFailed, "stage: "+errorMessage(err)
		return r
	}
	r.LeaseAccessor, r.LeaseTTL, r.DBLeaseID = staged.LeaseAccessor, staged.LeaseTTL, staged.DBLeaseID
	c.record(ctx, contract.AuditLease, idx(act.Index), "credential leased", map[string]any{
		"accessor": staged.LeaseAccessor, "ttl": staged.LeaseTTL.String(), "policies": staged.LeasePolicies,
		"db_lease": staged.DBLeaseID, "job": staged.JobName, "secret": staged.SecretName, "namespace": job.Namespace,
	})

	var run activities.RunOutput
	ro := runOptions(time.Duration(act.Deadline))
	ro.Summary = actionSummary("run", act)
	rctx := workflow.WithActivityOptions(ctx, ro)
	if err := workflow.ExecuteActivity(rctx, a.RunJob, activities.RunInput{
		Namespace: job.Namespace, JobName: job.Name, ActionType: act.Type,
		LeaseAccessor: staged.LeaseAccessor, DBLeaseID: staged.DBLeaseID,
	}).Get(ctx, &run); err != nil {
		r.Outcome, r.Error = contract.OutcomeFailed, "run: "+errorMessage(err)
		return r
	}
	r.ExitCode, r.Reason, r.Output = run.ExitCode, run.Reason, run.Output
	r.StartedAt, r.FinishedAt = run.StartedAt, run.FinishedAt
	c.record(ctx, contract.AuditJob, idx(act.Index), fmt.Sprintf("job %s/%s: %s", job.Namespace, job.Name, run.Reason), map[string]any{
		"namespace": job.Namespace, "job": job.Name, "pod": run.PodName, "exit_code": run.ExitCode,
		"reason": run.Reason, "duration": run.FinishedAt.Sub(run.StartedAt).String(),
	})
	if run.Succeeded {
		r.Outcome = contract.OutcomeSucceeded
	} else {
		r.Outcome, r.Error = contract.OutcomeFailed, fmt.Sprintf(jobFailedPrefix+"%s (exit code %d)", run.Reason, run.ExitCode)
	}
	return r
}

// lastStep reports whether act is the last thing the cycle runs: the plan's
// last action, not cancelled, and no rollback may follow it.
func (c *cycle) lastStep(ctx workflow.Context, act policy.RenderedAction) bool {
	if ctx.Err() != nil || !c.agentState || len(c.plan.Actions) == 0 {
		return false
	}
	if act.Index >= rollbackIndexOffset {
		return act.Index-rollbackIndexOffset == c.plan.Actions[len(c.plan.Actions)-1].Index
	}
	return act.Index == c.plan.Actions[len(c.plan.Actions)-1].Index && (act.Rollback == nil || act.Decision.Phase != policy.PhaseAutonomous)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// errorMessage unwraps Temporal's activity error to the cause users need.
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Error()
	}
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) {
		return "canceled"
	}
	return err.Error()
}
