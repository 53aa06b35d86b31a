package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// TestManyWaitingCycles parks CHAOS_WAITING advisory cycles (default 200;
// make bench: 10,000) waiting for approval on one worker process whose
// workflow cache is bounded (AIRLOCK_WORKFLOW_CACHE_SIZE, default 1000),
// and measures: time to start them, the worker's RSS while they wait, time
// for `cycle pending` (starter.Waiting: visibility pages, no query per
// cycle) to list them all, and time to decide them all — the first 100
// approved (they run), the rest denied.
func TestManyWaitingCycles(t *testing.T) {
	n := envInt("CHAOS_WAITING", 200)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Minute)
	defer cancel()
	f := newFleet(t, 1)
	stamp := fmt.Sprintf("wait-%d", time.Now().UnixNano())
	ids := make([]string, n)
	for i := range n {
		ids[i] = contract.CycleWorkflowID("chaos-adv", fmt.Sprintf("%s-%d", stamp, i))
	}

	begin := time.Now()
	// (assert, not require, inside the pool: FailNow must not leave a
	// worker goroutine mid-way.)
	pool(n, 32, func(i int) {
		_, err := startRetrying(ctx, contract.CycleRequest{AgentID: "chaos-adv", CycleID: fmt.Sprintf("%s-%d", stamp, i),
			Actions: []policy.Proposal{{Type: "patch", Params: map[string]any{"seq": i}}}})
		assert.NoError(t, err)
	})
	require.False(t, t.Failed(), "every cycle started")
	started := time.Since(begin)

	// Every cycle has run its first task and waits: visibility lists it.
	var listed int
	var listTook time.Duration
	require.Eventually(t, func() bool {
		t0 := time.Now()
		w, err := env.starter.Waiting(ctx, 0)
		listTook = time.Since(t0)
		listed = 0
		for _, c := range w {
			if c.AgentID == "chaos-adv" && strings.Contains(c.WorkflowID, stamp) {
				listed++
			}
		}
		return err == nil && listed == n
	}, 30*time.Minute, 2*time.Second, "all %d cycles wait (listed %d)", n, listed)
	allWaiting := time.Since(begin)
	_, rss := f.usage(0)

	const approved = 100
	var decided atomic.Int64
	begin = time.Now()
	pool(n, 32, func(i int) {
		p, err := env.starter.Pending(ctx, ids[i])
		if !assert.NoError(t, err) || !assert.Len(t, p, 1) {
			return
		}
		kind := contract.DecisionDeny
		if i < approved {
			kind = contract.DecisionApprove
		}
		_, err = env.starter.Decide(ctx, ids[i], contract.Decision{ActionIndex: 0, ActionHash: p[0].Action.Hash, Kind: kind, Approver: "U1", Via: "cli"})
		if assert.NoError(t, err) {
			decided.Add(1)
		}
	})
	decideTook := time.Since(begin)
	var ok atomic.Int64
	pool(n, 32, func(i int) {
		res, err := env.starter.Result(ctx, ids[i])
		want := contract.OutcomeDenied
		if i < approved {
			want = contract.OutcomeSucceeded
		}
		if assert.NoError(t, err) && assert.Equal(t, want, res.Outcome, "%s: %+v", ids[i], res.Actions) {
			ok.Add(1)
		}
	})

	fmt.Printf("\n%d advisory cycles waiting for approval on one worker (workflow cache %s)\n", n, "1000")
	fmt.Printf("  start all               %8.1f s (%.0f/s)\n", started.Seconds(), float64(n)/started.Seconds())
	fmt.Printf("  all waiting             %8.1f s after the first start\n", allWaiting.Seconds())
	fmt.Printf("  worker RSS while waiting %7.0f MB (target <= 400 MB)\n", float64(rss)/(1<<20))
	fmt.Printf("  cycle pending lists all %8.3f s (paged visibility, no per-cycle query)\n", listTook.Seconds())
	fmt.Printf("  decide all              %8.1f s (%.0f/s; %d approved and run, %d denied), %d ended as decided\n",
		decideTook.Seconds(), float64(decided.Load())/decideTook.Seconds(), min(n, approved), max(0, n-approved), ok.Load())
	assert.EqualValues(t, n, ok.Load())
	assert.Less(t, rss, int64(400<<20), "worker RSS")
}

// pool runs f(0..n-1) on at most width goroutines.
func pool(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range width {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
