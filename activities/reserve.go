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

// The server admits only a few Updates in flight per workflow
// (history.maxInFlightUpdates, 10 by default) and answers any more with
// ResourceExhausted, which the SDK retries with a backoff of seconds. An
// agent's workflow is one workflow however many of its cycles stage at
// once, so a worker sends each agent's reservations one Update at a time:
// a reservation asked while one is in flight waits for it and goes with
// every other one that arrived meanwhile. A lone reservation goes at once.

// reserveBatchTimeout bounds one batch's Update; each caller also stops
// waiting when its own context ends.
const reserveBatchTimeout = time.Minute

// reserveQueues holds each agent's reservations waiting to be sent.
type reserveQueues struct {
	mu     sync.Mutex
	agents map[string]*reserveQueue
}

type reserveQueue struct {
	waiting []*reservation
	sending bool
}

type reservation struct {
	ctx  context.Context
	req  contract.ReserveRequest
	done chan error // buffered: the sender never blocks on a caller that left
}

// ask queues r and waits for its answer.
func (q *reserveQueues) ask(ctx context.Context, a *Activities, r contract.ReserveRequest) error {
	res := &reservation{ctx: ctx, req: r, done: make(chan error, 1)}
	q.mu.Lock()
	if q.agents == nil {
		q.agents = map[string]*reserveQueue{}
	}
	aq := q.agents[r.AgentID]
	if aq == nil {
		aq = &reserveQueue{}
		q.agents[r.AgentID] = aq
	}
	aq.waiting = append(aq.waiting, res)
	start := !aq.sending
	aq.sending = true
	q.mu.Unlock()
	if start {
		go q.send(a, r.AgentID, aq)
	}
	select {
	case err := <-res.done:
		return err
	case <-ctx.Done():
		// The hold may still be taken: the retry asks again (a held hold is
		// granted as held) or the cycle's report gives it back.
		return ctx.Err()
	}
}

// send sends an agent's waiting reservations until none are left.
func (q *reserveQueues) send(a *Activities, agentID string, aq *reserveQueue) {
	for {
		q.mu.Lock()
		batch := aq.waiting
		if len(batch) > contract.MaxReserveBatch {
			batch = batch[:contract.MaxReserveBatch]
		}
		aq.waiting = aq.waiting[len(batch):]
		if len(batch) == 0 {
			aq.sending = false
			delete(q.agents, agentID)
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		a.sendReservations(agentID, batch)
	}
}

// sendReservations answers every reservation of a batch. Callers that have
// left are not asked for: their staging failed and will ask again.
func (a *Activities) sendReservations(agentID string, batch []*reservation) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	// The first caller's context carries its trace; not its cancellation,
	// which would fail the others' requests with it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), reserveBatchTimeout)
	defer cancel()
	if len(live) == 1 {
		live[0].done <- a.reserveOne(ctx, live[0].req)
		return
	}
	in := contract.ReserveBatch{Requests: make([]contract.ReserveRequest, len(live))}
	for i, r := range live {
		in.Requests[i] = r.req
	}
	var out contract.ReserveBatchResult
	err := a.agentUpdate(ctx, agentID, contract.UpdateReserveBatch, in, &out)
	if err != nil && unknownUpdate(err) {
		// A worker of an earlier release ran the agent's workflow task:
		// ask one by one.
		for _, r := range live {
			r.done <- a.reserveOne(ctx, r.req)
		}
		return
	}
	if err == nil && len(out.Results) != len(live) {
		err = fmt.Errorf("reserve batch of agent %s: %d answers to %d requests", agentID, len(out.Results), len(live))
	}
	for i, r := range live {
		if err != nil {
			r.done <- reserveError(r.req, err)
			continue
		}
		r.done <- outcomeError(r.req, out.Results[i])
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
