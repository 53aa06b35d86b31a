package workflows

import (
	"fmt"
	"maps"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// Budgets are counted here, in the agent's workflow: it is single-threaded
// and the reserve handler does not yield between check and hold, so
// "check, then hold" is atomic however many cycles ask at once. Holds are
// taken by the worker from activities the cycle runs anyway (StageAction,
// the approval message), so cycles need no extra command; they are given
// back by ReleaseAction (a signal: nobody waits on it), by the cycle's
// report (all its holds) and, failing both, lapse at their Until.

func SameHold(x contract.AgentHold, h contract.BudgetHold) bool {
	return x.WorkflowID == h.WorkflowID && x.Index == h.Index && x.Kind == h.Kind
}

func (ag *agent) registerBudgetHandlers(ctx workflow.Context) error {
	ag.releases = workflow.GetSignalChannel(ctx, contract.SignalRelease)
	ag.reports = workflow.GetSignalChannel(ctx, contract.SignalReportCycle)
	ag.reportBatches = workflow.GetSignalChannel(ctx, contract.SignalReportCycles)
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateReserve, ag.reserve,
		workflow.UpdateHandlerOptions{Validator: ag.validateReserve}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateReserveBatch, ag.reserveBatch,
		workflow.UpdateHandlerOptions{Validator: ag.validateReserveBatch})
}

func (ag *agent) validateHold(h contract.BudgetHold) error {
	switch {
	case h.AgentID != ag.st.AgentID || !strings.HasPrefix(h.WorkflowID, "cycle/"+ag.st.AgentID+"/"):
		return temporal.NewApplicationError(fmt.Sprintf("%s is not a cycle of agent %s", h.WorkflowID, ag.st.AgentID), contract.ErrTypeInvalidRequest)
	case !h.Kind.Valid():
		return temporal.NewApplicationError(fmt.Sprintf("unknown budget hold kind %q", h.Kind), contract.ErrTypeInvalidRequest)
	}
	return nil
}

// validateReserve refuses malformed requests only. The budget check is the
// handler's: releases and reports (signals) that arrived with the request
// must count first, and update handlers run before the main loop drains
// them.
func (ag *agent) validateReserve(_ workflow.Context, r contract.ReserveRequest) error {
	return ag.validateHold(r.BudgetHold)
}

// validateReserveBatch refuses an empty or oversized batch; a malformed
// request in it is answered as invalid on its own (the others count).
func (ag *agent) validateReserveBatch(_ workflow.Context, b contract.ReserveBatch) error {
	if n := len(b.Requests); n == 0 || n > contract.MaxReserveBatch {
		return temporal.NewApplicationError(fmt.Sprintf("a reserve batch carries 1 to %d requests, not %d", contract.MaxReserveBatch, n), contract.ErrTypeInvalidRequest)
	}
	return nil
}

// reserve checks and takes a hold, in one step of the single-threaded
// workflow (nothing yields in between). Over budget the update fails,
// naming the budget (ErrTypeBudgetExhausted).
func (ag *agent) reserve(ctx workflow.Context, r contract.ReserveRequest) (contract.ReserveResult, error) {
	ag.handled++
	ag.drainSignals(ctx)
	res, be := ag.take(ctx, r)
	if be != nil {
		return contract.ReserveResult{}, temporal.NewApplicationError(be.Error(), contract.ErrTypeBudgetExhausted, *be)
	}
	return res, nil
}

// reserveBatch takes each request's hold in order, as reserve would, in one
// step: a batch is as atomic as the requests one by one.
func (ag *agent) reserveBatch(ctx workflow.Context, batch contract.ReserveBatch) (contract.ReserveBatchResult, error) {
	ag.handled++
	ag.drainSignals(ctx)
	out := contract.ReserveBatchResult{Results: make([]contract.ReserveOutcome, len(batch.Requests))}
	for i, r := range batch.Requests {
		if err := ag.validateHold(r.BudgetHold); err != nil {
			out.Results[i].Invalid = err.Error()
			continue
		}
		out.Results[i].ReserveResult, out.Results[i].Refused = ag.take(ctx, r)
	}
	return out, nil
}

// take checks and holds one request. Asking again for a held one (a
// retried staging, an approval's reminder) changes nothing. A Job's hold
// replaces its action's approval hold: the approval was decided.
func (ag *agent) take(ctx workflow.Context, r contract.ReserveRequest) (contract.ReserveResult, *policy.BudgetError) {
	now := workflow.Now(ctx)
	b := &ag.st.Budget
	if b.Holding(r.BudgetHold) {
		return contract.ReserveResult{Held: true, Use: b.Use(now)}, nil
	}
	if !r.Compensation {
		if be := b.Limits.Check(ag.st.AgentID, r.Kind, b.Use(now)); be != nil {
			return contract.ReserveResult{}, be
		}
	}
	switch r.Kind {
	case policy.BudgetRun:
		approval := r.BudgetHold
		approval.Kind = policy.BudgetApproval
		b.Drop(now, func(x contract.AgentHold) bool { return SameHold(x, approval) })
		b.Actions = contract.CountMinute(b.Actions, now)
	case policy.BudgetApproval:
		b.Drop(now, func(contract.AgentHold) bool { return false })
		b.ApprovalRequests = contract.CountMinute(b.ApprovalRequests, now)
	}
	until := r.Until
	if !until.After(now) {
		until = now.Add(activities.HoldGrace)
	}
	b.Holds = append(b.Holds, contract.AgentHold{WorkflowID: r.WorkflowID, Index: r.Index, Kind: r.Kind, Until: until})
	return contract.ReserveResult{Use: b.Use(now)}, nil
}

// drainSignals applies the cycle reports and releases received so far. A
// report that is not of this agent's cycles is dropped (a signal cannot be
// refused); a release of what is not held (refused, or released already)
// changes nothing.
func (ag *agent) drainSignals(ctx workflow.Context) {
	now := workflow.Now(ctx)
	apply := func(r contract.CycleReport) {
		if err := ag.validateReport(ctx, r); err != nil {
			workflow.GetLogger(ctx).Warn("cycle report dropped", "error", err)
		} else {
			ag.report(ctx, r)
		}
	}
	var r contract.CycleReport
	for ag.reports.ReceiveAsync(&r) {
		apply(r)
		r = contract.CycleReport{}
	}
	var batch contract.CycleReports
	for ag.reportBatches.ReceiveAsync(&batch) {
		for _, r := range batch.Reports {
			apply(r)
		}
		batch = contract.CycleReports{}
	}
	var h contract.BudgetHold
	for ag.releases.ReceiveAsync(&h) {
		if h.AgentID == ag.st.AgentID {
			ag.st.Budget.Drop(now, func(x contract.AgentHold) bool { return SameHold(x, h) })
		}
		h = contract.BudgetHold{}
	}
}

// releaseCycle drops every hold of a cycle that ended (its report).
func (ag *agent) releaseCycle(ctx workflow.Context, workflowID string) {
	ag.st.Budget.Drop(workflow.Now(ctx), func(x contract.AgentHold) bool { return x.WorkflowID == workflowID })
}

func cloneCounters(c contract.AgentCounters) contract.AgentCounters {
	c.Outcomes, c.Actions = maps.Clone(c.Outcomes), maps.Clone(c.Actions)
	c.BudgetRefusals, c.Feedback = maps.Clone(c.BudgetRefusals), maps.Clone(c.Feedback)
	return c
}
