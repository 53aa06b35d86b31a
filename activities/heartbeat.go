package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeatInterval is how often a running activity reports that it is
// alive. The SDK batches what it sends to a bit under the heartbeat timeout.
const heartbeatInterval = 2 * time.Second

// heartbeat sends an activity's heartbeats from a goroutine of its own, so
// that an activity blocked on a slow or throttled apiserver or Vault still
// proves its worker alive, and a dead worker's attempt is retried after the
// heartbeat timeout instead of its whole StartToClose timeout.
type heartbeat struct {
	mu     sync.Mutex
	status string
	cancel context.CancelFunc
	done   chan struct{}
}

// startHeartbeat starts heartbeating with status; outside an activity
// (plain Go callers, benchmarks) it does nothing.
func startHeartbeat(ctx context.Context, status string) *heartbeat {
	h := &heartbeat{status: status, done: make(chan struct{})}
	if !activity.IsActivity(ctx) {
		close(h.done)
		h.cancel = func() {}
		return h
	}
	hctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() {
		defer close(h.done)
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			activity.RecordHeartbeat(ctx, h.get())
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// set changes the status the next heartbeats carry.
func (h *heartbeat) set(status string) {
	h.mu.Lock()
	h.status = status
	h.mu.Unlock()
}

func (h *heartbeat) get() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// stop ends the heartbeats and waits for the goroutine.
func (h *heartbeat) stop() {
	h.cancel()
	<-h.done
}
