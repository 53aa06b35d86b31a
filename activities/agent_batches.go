package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/contract"
)

// An agent's workflow is one workflow however many of its cycles run at
// once, and the server serialises what reaches one workflow: it admits only
// a few Updates in flight per workflow (history.maxInFlightUpdates, 10 by
// default) and answers any more with ResourceExhausted, which the SDK
// retries with a backoff of seconds; each signal takes the workflow's lock.
// So a worker sends each agent's reservations one Update at a time, and its
// cycle reports a few signals at a time (reportsInFlight): what is asked
// while those are in flight waits and goes with everything else that
// arrived meanwhile. A lone request goes at once.

// reportsInFlight is how many report signals a worker sends one agent at
// once: a report ends its cycle, so reports wait in line only when several
// are already on their way.
const reportsInFlight = 4

// agentCallTimeout bounds one batch's call; each caller also stops waiting
// when its own context ends.
const agentCallTimeout = time.Minute

// agentBatches holds, per agent, the requests waiting to be sent.
type agentBatches struct {
	mu     sync.Mutex
	agents map[string]*agentBatch
}

type agentBatch struct {
	waiting []*agentCall
	senders int
}

// agentCall is one caller's request and where its answer goes.
type agentCall struct {
	ctx  context.Context
	req  any
	done chan error // buffered: the sender never blocks on a caller that left
}

// ask queues req for agentID and waits for its answer. At most inFlight
// sends run for one agent at once; send answers a batch of at most limit
// calls (every one of them, on every path).
func (q *agentBatches) ask(ctx context.Context, agentID string, req any, limit, inFlight int, send func(ctx context.Context, calls []*agentCall)) error {
	c := &agentCall{ctx: ctx, req: req, done: make(chan error, 1)}
	q.mu.Lock()
	if q.agents == nil {
		q.agents = map[string]*agentBatch{}
	}
	b := q.agents[agentID]
	if b == nil {
		b = &agentBatch{}
		q.agents[agentID] = b
	}
	b.waiting = append(b.waiting, c)
	start := b.senders < max(inFlight, 1)
	if start {
		b.senders++
	}
	q.mu.Unlock()
	if start {
		go q.drain(agentID, b, limit, send)
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		// What was asked may still be done: a retry asks again (both are
		// idempotent per cycle).
		return ctx.Err()
	}
}

// drain sends an agent's waiting calls until none are left.
func (q *agentBatches) drain(agentID string, b *agentBatch, limit int, send func(context.Context, []*agentCall)) {
	for {
		q.mu.Lock()
		batch := b.waiting[:min(len(b.waiting), limit)]
		b.waiting = b.waiting[len(batch):]
		if len(batch) == 0 {
			if b.senders--; b.senders == 0 {
				delete(q.agents, agentID)
			}
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		// Callers that have left are not asked for: they will ask again.
		live := batch[:0:0]
		for _, c := range batch {
			if c.ctx.Err() == nil {
				live = append(live, c)
			}
		}
		if len(live) == 0 {
			continue
		}
		// The first caller's context carries its trace; not its
		// cancellation, which would fail the others' requests with it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), agentCallTimeout)
		send(ctx, live)
		cancel()
	}
}

// reserveBatch answers a batch of reservations (agent_batches.go).
func (a *Activities) reserveBatch(ctx context.Context, calls []*agentCall) {
	reqs := make([]contract.ReserveRequest, len(calls))
	for i, c := range calls {
		reqs[i] = c.req.(contract.ReserveRequest)
	}
	if len(calls) == 1 {
		calls[0].done <- a.reserveOne(ctx, reqs[0])
		return
	}
	var out contract.ReserveBatchResult
	err := a.agentUpdate(ctx, reqs[0].AgentID, contract.UpdateReserveBatch, contract.ReserveBatch{Requests: reqs}, &out)
	if err != nil && unknownUpdate(err) {
		// A worker of an earlier release ran the agent's workflow task:
		// ask one by one.
		for i, c := range calls {
			c.done <- a.reserveOne(ctx, reqs[i])
		}
		return
	}
	if err == nil && len(out.Results) != len(calls) {
		err = fmt.Errorf("reserve batch of agent %s: %d answers to %d requests", reqs[0].AgentID, len(out.Results), len(calls))
	}
	for i, c := range calls {
		if err != nil {
			c.done <- reserveError(reqs[i], err)
			continue
		}
		c.done <- outcomeError(reqs[i], out.Results[i])
	}
}

// outcomeError is reserve's answer to one request of a batch, the same as
// the single-request Update's.
func outcomeError(r contract.ReserveRequest, o contract.ReserveOutcome) error {
	switch {
	case o.Refused != nil:
		return budgetExhausted(*o.Refused, o.Refused.Error())
	case o.Invalid != "":
		return fmt.Errorf("reserve %s budget of agent %s: %w", r.Kind, r.AgentID,
			temporal.NewApplicationError(o.Invalid, contract.ErrTypeInvalidRequest))
	}
	return nil
}

// unknownUpdate reports whether the workflow refused the Update's name.
func unknownUpdate(err error) bool {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false
	}
	return strings.Contains(err.Error(), "unknown update")
}

// reportBatch sends a batch of cycle reports as one signal (a lone report
// as the signal it always was).
func (a *Activities) reportBatch(ctx context.Context, calls []*agentCall) {
	reports := make([]contract.CycleReport, len(calls))
	for i, c := range calls {
		reports[i] = c.req.(contract.CycleReport)
	}
	id := contract.AgentWorkflowID(reports[0].AgentID)
	var err error
	if len(reports) == 1 {
		err = a.Temporal.SignalWorkflow(ctx, id, "", contract.SignalReportCycle, reports[0])
	} else {
		err = a.Temporal.SignalWorkflow(ctx, id, "", contract.SignalReportCycles, contract.CycleReports{Reports: reports})
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		err = nil
	} else if err != nil {
		err = fmt.Errorf("report cycle to %s: %w", id, err)
	}
	for _, c := range calls {
		c.done <- err
	}
}
