package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Requests asked at once for one agent are answered, each with its own
// answer, in batches no larger than the limit and with no more sends in
// flight than allowed; another agent's requests are not held up by them;
// a caller that leaves gets its context's error and is not sent.
func TestAgentBatchesAnswerEveryCallerWithinTheLimits(t *testing.T) {
	for _, inFlight := range []int{1, 4} {
		t.Run(fmt.Sprintf("in flight %d", inFlight), func(t *testing.T) {
			var q agentBatches
			var sending, maxSending, sends, sent atomic.Int64
			release := make(chan struct{})
			send := func(_ context.Context, calls []*agentCall) {
				n := sending.Add(1)
				for m := maxSending.Load(); n > m && !maxSending.CompareAndSwap(m, n); m = maxSending.Load() {
				}
				<-release // hold the first sends while the rest queue up
				assert.LessOrEqual(t, len(calls), 10, "batch within the limit")
				sends.Add(1)
				sent.Add(int64(len(calls)))
				for _, c := range calls {
					if c.req.(int)%7 == 0 {
						c.done <- fmt.Errorf("refused %d", c.req)
					} else {
						c.done <- nil
					}
				}
				sending.Add(-1)
			}
			const n = 60
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { errs[i] = q.ask(t.Context(), "a", i, 10, inFlight, send) })
			}
			// Every sender holds a batch; the rest wait.
			require.Eventually(t, func() bool { return sending.Load() == int64(inFlight) }, 5*time.Second, time.Millisecond)
			queued := func(req int) func() bool {
				return func() bool {
					q.mu.Lock()
					defer q.mu.Unlock()
					for _, c := range q.agents["a"].waiting {
						if c.req == req {
							return true
						}
					}
					return false
				}
			}
			// A caller that leaves while its request waits.
			gone, cancel := context.WithCancel(t.Context())
			left := make(chan error, 1)
			go func() { left <- q.ask(gone, "a", 1000, 10, inFlight, send) }()
			require.Eventually(t, queued(1000), 5*time.Second, time.Millisecond)
			cancel()
			require.ErrorIs(t, <-left, context.Canceled)
			close(release)
			wg.Wait()

			for i, err := range errs {
				if i%7 == 0 {
					assert.EqualError(t, err, fmt.Sprintf("refused %d", i))
				} else {
					assert.NoError(t, err, "request %d", i)
				}
			}
			assert.Equal(t, int64(n), sent.Load(), "every live request sent once; the one that left, never")
			assert.LessOrEqual(t, maxSending.Load(), int64(inFlight), "sends in flight")
			assert.Less(t, sends.Load(), int64(n/2), "requests asked together go together")
			q.mu.Lock()
			assert.Empty(t, q.agents, "nothing left queued")
			q.mu.Unlock()
		})
	}
}

// Each agent has its own queue: one agent's slow send does not hold
// another's requests.
func TestAgentBatchesAreIndependentPerAgent(t *testing.T) {
	var q agentBatches
	stuck := make(chan struct{})
	defer close(stuck)
	slow := func(_ context.Context, calls []*agentCall) {
		<-stuck
		for _, c := range calls {
			c.done <- errors.New("late")
		}
	}
	fast := func(_ context.Context, calls []*agentCall) {
		for _, c := range calls {
			c.done <- nil
		}
	}
	go func() { _ = q.ask(context.Background(), "slow", 1, 10, 1, slow) }()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, q.ask(ctx, "fast", 1, 10, 1, fast))
}
