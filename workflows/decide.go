package workflows

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Gate states.
const (
	statusWaiting  = "waiting"
	statusApproved = "approved"
	statusDenied   = "denied"
	statusStopped  = "stopped"
	statusExpired  = "expired"
	statusRecorded = "recorded"
	statusPassed   = "veto window passed"
	statusAlready  = "already decided"
	// statusRefused: the agent's budget refused the approval before its
	// message was posted.
	statusRefused = "refused"
)

// gate is an action open to human decisions.
type gate struct {
	act       policy.RenderedAction
	notice    contract.NoticeMode
	needed    int
	approved  []string
	decisions []contract.DecisionRecord
	closed    bool
	status    string
	deadline  time.Time
	// refusal is the budget that refused the gate (statusRefused).
	refusal        *policy.BudgetError
	refusalMessage string
}

func (g *gate) decidedBy(approver string) bool {
	return slices.ContainsFunc(g.decisions, func(d contract.DecisionRecord) bool { return d.Approver == approver })
}

// cycle is the state a running AgentCycle shares with its handlers.
type cycle struct {
	req   contract.CycleRequest
	plan  *policy.Plan
	res   contract.CycleResult
	gates map[int]*gate
	// identity is who the request was verified to come from; nil for
	// cycles started before verification (their histories still replay).
	identity *identity
	// localNotices posts and edits messages as local activities.
	localNotices bool
	// localSteps: stage, dry-run and release run as local activities.
	localSteps bool
	// agentState: the cycle plans with its Agent workflow's state and
	// reports back to it (version "agent-state").
	agentState bool
	// role is how the request's version was treated; canaryQuiet: a
	// canary's shadow proposals post no message (cycle_canary.go).
	role        policy.VersionRole
	canaryQuiet bool
	// agentRefused: the agent was not active, the cycle was refused.
	agentRefused bool
	// shadowed are the shadow proposals reported to the agent's workflow,
	// where their feedback lands.
	shadowed []contract.ShadowProposal
	// signing: the trail's head is signed at each decision and at the end
	// (version 5 of "verified-identity", audit.go).
	signing bool
	// consolidated: version 6, which implies the latest of the cycle's
	// other changes without a marker for each (cycle.go).
	consolidated bool
}

var allowedKinds = map[contract.NoticeMode][]contract.DecisionKind{
	contract.NoticeApproval: {contract.DecisionApprove, contract.DecisionDeny},
	contract.NoticeVeto:     {contract.DecisionStop},
	contract.NoticeShadow:   {contract.DecisionAgree, contract.DecisionDisagree},
}

// validate refuses a decision before it reaches history: unknown action,
// self-approval (checked against verified identities), approver not
// allowed, stale hash, wrong kind, or a decision on an action another human
// already closed. The same approver repeating a decision passes: apply
// answers "already decided".
func (c *cycle) validate(d contract.Decision) error {
	if c.plan == nil {
		return errors.New("cycle is not planned yet")
	}
	g, ok := c.gates[d.ActionIndex]
	if !ok {
		return fmt.Errorf("action %d is not waiting for a decision", d.ActionIndex)
	}
	if d.Approver == "" {
		return errors.New("approver is required")
	}
	if slices.Contains(c.selves(), d.Approver) {
		return fmt.Errorf("%s requested this cycle and cannot decide on it", d.Approver)
	}
	if !slices.Contains(c.plan.Approvers, d.Approver) {
		return fmt.Errorf("%s is not an approver of agent %s", d.Approver, c.plan.AgentID)
	}
	if d.ActionHash != g.act.Hash {
		return errors.New("stale decision: the action changed since it was shown (hash mismatch)")
	}
	if !slices.Contains(allowedKinds[g.notice], d.Kind) {
		return fmt.Errorf("%q is not a valid decision for this action (want one of %v)", d.Kind, allowedKinds[g.notice])
	}
	if g.decidedBy(d.Approver) {
		return nil // a second click: harmless
	}
	if g.closed {
		return fmt.Errorf("action %d is already closed: %s", d.ActionIndex, g.status)
	}
	return nil
}

// selves are who may not decide on this cycle: the verified signer (the
// agent, "agent:<id>") and the principal it signed. Cycles from before
// verification have no verified identity; for them the unsigned principal
// is still refused (stricter, never looser, than before).
func (c *cycle) selves() []string {
	if c.identity != nil {
		return c.identity.selves()
	}
	if c.req.Principal != "" {
		return []string{c.req.Principal}
	}
	return nil
}

// apply records a validated decision.
func (c *cycle) apply(ctx workflow.Context, d contract.Decision) contract.DecisionResult {
	g := c.gates[d.ActionIndex]
	if g.decidedBy(d.Approver) || (g.closed && g.notice != contract.NoticeShadow) {
		return contract.DecisionResult{Status: statusAlready, ApprovedBy: slices.Clone(g.approved)}
	}
	now := workflow.Now(ctx)
	g.decisions = append(g.decisions, contract.DecisionRecord{Approver: d.Approver, Kind: d.Kind, Via: d.Via, At: now, Comment: d.Comment})
	switch d.Kind {
	case contract.DecisionApprove:
		g.approved = append(g.approved, d.Approver)
		g.status = statusWaiting
		if len(g.approved) >= g.needed {
			g.closed, g.status = true, statusApproved
		}
	case contract.DecisionDeny:
		g.closed, g.status = true, statusDenied
	case contract.DecisionStop:
		g.closed, g.status = true, statusStopped
	case contract.DecisionAgree, contract.DecisionDisagree:
		g.status = statusRecorded // feedback only: never changes what runs
	}
	c.record(ctx, contract.AuditDecision, idx(d.ActionIndex), fmt.Sprintf("%s by %s via %s", d.Kind, d.Approver, d.Via), map[string]any{
		"approver": d.Approver, "decision": d.Kind, "via": d.Via, "comment": d.Comment, "status": g.status, "hash": d.ActionHash,
	})
	workflow.GetLogger(ctx).Info("decision", "action", d.ActionIndex, "approver", d.Approver, "decision", d.Kind, "via", d.Via, "status", g.status)
	return contract.DecisionResult{Status: g.status, ApprovedBy: slices.Clone(g.approved), DecidedBy: d.Approver, DecidedAt: now}
}

// registerHandlers installs the decision Update (with its validator), the
// signal fallback and the pending query.
func (c *cycle) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateDecide,
		func(ctx workflow.Context, d contract.Decision) (contract.DecisionResult, error) {
			return c.apply(ctx, d), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, d contract.Decision) error { return c.validate(d) }},
	); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, contract.QueryPending, c.pending); err != nil {
		return err
	}
	ch := workflow.GetSignalChannel(ctx, contract.SignalDecide)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var d contract.Decision
			if !ch.Receive(ctx, &d) {
				return
			}
			// Signals cannot be refused; invalid ones are logged and dropped.
			if err := c.validate(d); err != nil {
				workflow.GetLogger(ctx).Warn("decision refused", "action", d.ActionIndex, "approver", d.Approver, "error", err)
				continue
			}
			c.apply(ctx, d)
		}
	})
	return nil
}

// pending lists actions waiting for humans.
func (c *cycle) pending() ([]contract.PendingAction, error) {
	var out []contract.PendingAction
	for _, i := range sortedGates(c.gates) {
		g := c.gates[i]
		if g.closed || g.notice == contract.NoticeShadow {
			continue
		}
		out = append(out, c.pendingFor(g))
	}
	return out, nil
}

func (c *cycle) pendingFor(g *gate) contract.PendingAction {
	return contract.PendingAction{
		WorkflowID: c.res.WorkflowID, AgentID: c.plan.AgentID, Principal: c.req.Principal,
		Action: g.act, Approvers: c.plan.Approvers, Needed: g.needed,
		ApprovedBy: slices.Clone(g.approved), Deadline: g.deadline, Thoughts: c.req.Thoughts,
	}
}

func sortedGates(m map[int]*gate) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

var (
	noticeOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	}
	localNoticeOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	}
)

// notice runs a message activity (post or edit): a local activity in
// cycles of version 2, a regular one before.
func (c *cycle) notice(ctx workflow.Context, name string, arg any) workflow.Future {
	opts, local := noticeOptions, localNoticeOptions
	opts.Summary, local.Summary = noticeSummary(name, arg), noticeSummary(name, arg)
	if c.localNotices {
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, local), name, arg)
	}
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), name, arg)
}

// notify posts a message about a gate. A failure to post is logged, never
// fatal: the decision can still come from the CLI, and a timeout denies.
func (c *cycle) notify(ctx workflow.Context, g *gate) contract.MessageRef {
	return c.notifyTo(ctx, g, c.plan.SlackChannel)
}

func (c *cycle) notifyTo(ctx workflow.Context, g *gate, channel string) contract.MessageRef {
	ref, err := c.post(ctx, g, channel)
	if err != nil {
		workflow.GetLogger(ctx).Warn("post approval message", "action", g.act.Index, "error", err)
	}
	return ref
}

// post runs the message activity. For an approval the worker first takes a
// hold on the agent's budgets: over budget it fails with
// ErrTypeBudgetExhausted and nothing is posted.
func (c *cycle) post(ctx workflow.Context, g *gate, channel string) (contract.MessageRef, error) {
	var ref contract.MessageRef
	n := contract.Notice{Mode: g.notice, Channel: channel, Pending: c.pendingFor(g)}
	err := c.notice(ctx, contract.ActivityPostApproval, n).Get(ctx, &ref)
	return ref, err
}

// settle rewrites the gate's messages (first post, reminders, escalation)
// with its final state.
func (c *cycle) settle(ctx workflow.Context, g *gate, refs []contract.MessageRef, detail string) {
	for _, ref := range refs {
		c.settleOne(ctx, g, ref, detail)
	}
}

func (c *cycle) settleOne(ctx workflow.Context, g *gate, ref contract.MessageRef, detail string) {
	if ref.TS == "" {
		return
	}
	var by []string
	var at time.Time
	for _, d := range g.decisions {
		by = append(by, d.Approver)
		at = d.At
	}
	u := contract.NoticeUpdate{Ref: ref, WorkflowID: c.res.WorkflowID, Index: g.act.Index, Status: g.status, DecidedBy: by, DecidedAt: at, Detail: detail}
	if err := c.notice(ctx, contract.ActivityUpdateApproval, u).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("update approval message", "action", g.act.Index, "error", err)
	}
}

// await opens a gate for an action, posts its message and waits until the
// gate closes or the window ends. It returns the gate's final status.
func (c *cycle) await(ctx workflow.Context, act policy.RenderedAction, notice contract.NoticeMode, needed int, window time.Duration) (*gate, []contract.MessageRef) {
	g := &gate{act: act, notice: notice, needed: needed, status: statusWaiting, deadline: workflow.Now(ctx).Add(window)}
	c.gates[act.Index] = g
	if c.localNotices {
		// Listable without a query per cycle: `cycle pending` pages through
		// AirlockOutcome="waiting" in visibility.
		c.setOutcomeAttribute(ctx, outcomeWaiting)
		defer c.setOutcomeAttribute(ctx, outcomeRunning)
	}
	ref, err := c.post(ctx, g, c.plan.SlackChannel)
	if be, msg := budgetRefusal(err); be != nil {
		// Refused, not queued: no message, no wait.
		g.closed, g.status, g.refusal, g.refusalMessage = true, statusRefused, be, msg
		return g, nil
	}
	if err != nil {
		workflow.GetLogger(ctx).Warn("post approval message", "action", g.act.Index, "error", err)
	}
	refs := []contract.MessageRef{ref}
	if notice == contract.NoticeApproval {
		// Optional reminder, then escalation, while nobody has decided.
		for _, n := range []struct {
			after   time.Duration
			channel string
			what    string
		}{
			{time.Duration(c.plan.ReminderAfter), c.plan.SlackChannel, "reminder"},
			{time.Duration(c.plan.EscalateAfter), c.plan.EscalationChannel, "escalation"},
		} {
			if n.after <= 0 || n.after >= window {
				continue
			}
			workflow.Go(ctx, func(ctx workflow.Context) {
				wait := workflow.AwaitOptions{Timeout: n.after, TimerOptions: workflow.TimerOptions{Summary: fmt.Sprintf("%s after %s, action %d", n.what, n.after, act.Index)}}
				if done, err := workflow.AwaitWithOptions(ctx, wait, func() bool { return g.closed }); done || err != nil {
					return
				}
				refs = append(refs, c.notifyTo(ctx, g, n.channel))
				c.record(ctx, contract.AuditPolicy, idx(act.Index), n.what+" sent: still no decision", map[string]any{"channel": n.channel})
			})
		}
	}
	wait := workflow.AwaitOptions{Timeout: window, TimerOptions: workflow.TimerOptions{Summary: windowSummary(notice, act.Index)}}
	closed, err := workflow.AwaitWithOptions(ctx, wait, func() bool { return g.closed })
	if err != nil || !closed {
		g.closed = true
		switch {
		case err != nil:
			g.status = statusDenied // cancelled while waiting: nothing runs
		case notice == contract.NoticeVeto:
			g.status = statusPassed
		default:
			g.status = statusExpired // a timeout is a denial
		}
	}
	return g, refs
}
