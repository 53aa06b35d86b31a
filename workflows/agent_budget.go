package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/policy"
)

// Budgets are counted here, in the agent's workflow: it is single-threaded
// and the reserve handler does not yield between check and hold, so
// "check, then hold" is atomic however many cycles ask at once. Holds are
// taken by the worker from activities the cycle runs anyway (StageAction,
// the approval message), so cycles need no extra command; they are given
// back by ReleaseAction (a signal: nobody waits on it), by the cycle's
// report (all its holds) and, failing both, lapse at their Until.

// Use is the agent's budget use at now: the holds that have not lapsed, by
// kind, and what was counted in the sliding hour. The hour is counted per
// minute: a minute counts while any part of it is within the hour (an
// action counts for 60 to 61 minutes: refusals err on the safe side).
func (b AgentBudget) Use(now time.Time) policy.BudgetUse {
	held := b.Held
	if b.Holds != nil || held == nil {
		held = b.held(now)
	}
	u := policy.BudgetUse{RunningJobs: held[policy.BudgetRun], PendingApprovals: held[policy.BudgetApproval]}
	u.ActionsLastHour = lastHour(b.Actions, now)
	u.ApprovalRequestsLastHour = lastHour(b.ApprovalRequests, now)
	return u
}

func inHour(m MinuteCount, now time.Time) bool {
	return m.Minute.Add(time.Minute).After(now.Add(-policy.BudgetWindow))
}

func lastHour(ms []MinuteCount, now time.Time) int {
	n := 0
	for _, m := range ms {
		if inHour(m, now) {
			n += m.N
		}
	}
	return n
}

// counted adds one at now to a per-minute count, dropping minutes that
// left the hour (at most 61 are kept).
func counted(ms []MinuteCount, now time.Time) []MinuteCount {
	ms = slices.DeleteFunc(ms, func(m MinuteCount) bool { return !inHour(m, now) })
	minute := now.UTC().Truncate(time.Minute)
	if n := len(ms); n > 0 && ms[n-1].Minute.Equal(minute) {
		ms[n-1].N++
		return ms
	}
	return append(ms, MinuteCount{Minute: minute, N: 1})
}

// held counts the holds that have not lapsed at now, by kind.
func (b AgentBudget) held(now time.Time) map[policy.BudgetKind]int {
	n := map[policy.BudgetKind]int{}
	for _, h := range b.Holds {
		if h.Until.After(now) {
			n[h.Kind]++
		}
	}
	return n
}

// summary is the budget as the state query shows it: holds counted.
func (b AgentBudget) summary(now time.Time) AgentBudget {
	b = b.clone()
	b.Held, b.Holds = b.held(now), nil
	return b
}

func (b *AgentBudget) holds(h BudgetHold) bool {
	return slices.ContainsFunc(b.Holds, func(x AgentHold) bool { return sameHold(x, h) })
}

func sameHold(x AgentHold, h BudgetHold) bool {
	return x.WorkflowID == h.WorkflowID && x.Index == h.Index && x.Kind == h.Kind
}

// drop removes the holds f matches, and the lapsed ones.
func (b *AgentBudget) drop(now time.Time, f func(AgentHold) bool) {
	b.Holds = slices.DeleteFunc(b.Holds, func(x AgentHold) bool { return f(x) || !x.Until.After(now) })
}

func (b AgentBudget) clone() AgentBudget {
	b.Holds, b.Held = slices.Clone(b.Holds), maps.Clone(b.Held)
	b.Actions, b.ApprovalRequests = slices.Clone(b.Actions), slices.Clone(b.ApprovalRequests)
	return b
}

func (ag *agent) registerBudgetHandlers(ctx workflow.Context) error {
	ag.releases = workflow.GetSignalChannel(ctx, SignalRelease)
	ag.reports = workflow.GetSignalChannel(ctx, SignalReportCycle)
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateReserve, ag.reserve,
		workflow.UpdateHandlerOptions{Validator: ag.validateReserve})
}

func (ag *agent) validateHold(h BudgetHold) error {
	switch {
	case h.AgentID != ag.st.AgentID || !strings.HasPrefix(h.WorkflowID, "cycle/"+ag.st.AgentID+"/"):
		return temporal.NewApplicationError(fmt.Sprintf("%s is not a cycle of agent %s", h.WorkflowID, ag.st.AgentID), activities.ErrTypeInvalidRequest)
	case !h.Kind.Valid():
		return temporal.NewApplicationError(fmt.Sprintf("unknown budget hold kind %q", h.Kind), activities.ErrTypeInvalidRequest)
	}
	return nil
}

// validateReserve refuses malformed requests only. The budget check is the
// handler's: releases and reports (signals) that arrived with the request
// must count first, and update handlers run before the main loop drains
// them.
func (ag *agent) validateReserve(_ workflow.Context, r ReserveRequest) error {
	return ag.validateHold(r.BudgetHold)
}

// reserve checks and takes a hold, in one step of the single-threaded
// workflow (nothing yields in between). Asking again for a held one (a
// retried staging, an approval's reminder) changes nothing. A Job's hold
// replaces its action's approval hold: the approval was decided. Over
// budget the update fails, naming the budget (ErrTypeBudgetExhausted).
func (ag *agent) reserve(ctx workflow.Context, r ReserveRequest) (ReserveResult, error) {
	ag.handled++
	now := workflow.Now(ctx)
	ag.drainSignals(ctx)
	b := &ag.st.Budget
	if b.holds(r.BudgetHold) {
		return ReserveResult{Held: true, Use: b.Use(now)}, nil
	}
	if !r.Compensation {
		if be := b.Limits.Check(ag.st.AgentID, r.Kind, b.Use(now)); be != nil {
			return ReserveResult{}, temporal.NewApplicationError(be.Error(), activities.ErrTypeBudgetExhausted, *be)
		}
	}
	switch r.Kind {
	case policy.BudgetRun:
		approval := r.BudgetHold
		approval.Kind = policy.BudgetApproval
		b.drop(now, func(x AgentHold) bool { return sameHold(x, approval) })
		b.Actions = counted(b.Actions, now)
	case policy.BudgetApproval:
		b.drop(now, func(AgentHold) bool { return false })
		b.ApprovalRequests = counted(b.ApprovalRequests, now)
	}
	until := r.Until
	if !until.After(now) {
		until = now.Add(activities.HoldGrace)
	}
	b.Holds = append(b.Holds, AgentHold{WorkflowID: r.WorkflowID, Index: r.Index, Kind: r.Kind, Until: until})
	return ReserveResult{Use: b.Use(now)}, nil
}

// drainSignals applies the cycle reports and releases received so far. A
// report that is not of this agent's cycles is dropped (a signal cannot be
// refused); a release of what is not held (refused, or released already)
// changes nothing.
func (ag *agent) drainSignals(ctx workflow.Context) {
	now := workflow.Now(ctx)
	var r CycleReport
	for ag.reports.ReceiveAsync(&r) {
		if err := ag.validateReport(ctx, r); err != nil {
			workflow.GetLogger(ctx).Warn("cycle report dropped", "error", err)
		} else {
			ag.report(ctx, r)
		}
		r = CycleReport{}
	}
	var h BudgetHold
	for ag.releases.ReceiveAsync(&h) {
		if h.AgentID == ag.st.AgentID {
			ag.st.Budget.drop(now, func(x AgentHold) bool { return sameHold(x, h) })
		}
		h = BudgetHold{}
	}
}

// releaseCycle drops every hold of a cycle that ended (its report).
func (ag *agent) releaseCycle(ctx workflow.Context, workflowID string) {
	ag.st.Budget.drop(workflow.Now(ctx), func(x AgentHold) bool { return x.WorkflowID == workflowID })
}

// countRefusals adds a cycle's refusals to the counters.
func (c *AgentCounters) countRefusals(r map[string]int) {
	if len(r) == 0 {
		return
	}
	if c.BudgetRefusals == nil {
		c.BudgetRefusals = map[string]int{}
	}
	for name, n := range r {
		c.BudgetRefusals[name] += n
	}
}

func cloneCounters(c AgentCounters) AgentCounters {
	c.Outcomes, c.Actions = maps.Clone(c.Outcomes), maps.Clone(c.Actions)
	c.BudgetRefusals = maps.Clone(c.BudgetRefusals)
	return c
}
