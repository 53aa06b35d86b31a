package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeatInterval is how often a running activity reports that it is
// alive. The SDK batches what it sends (at most MaxHeartbeatThrottleInterval
// apart, see worker.New).
const heartbeatInterval = 2 * time.Second

// heartbeat sends an activity's heartbeats from a goroutine of its own, so
// that an activity blocked on a slow or throttled apiserver or Vault still
// proves its worker alive, and a dead worker's attempt is retried after the
// heartbeat timeout instead of its whole StartToClose timeout. Heartbeats
// carry no details: details are payloads, and encrypting a payload may need
// Vault (a new data key), which must never decide whether a live worker
// looks dead.
type heartbeat struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startHeartbeat starts heartbeating; outside an activity (plain Go
// callers, benchmarks) it does nothing.
func startHeartbeat(ctx context.Context) *heartbeat {
	h := &heartbeat{done: make(chan struct{})}
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
			activity.RecordHeartbeat(ctx)
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// stop ends the heartbeats and waits for the goroutine.
func (h *heartbeat) stop() {
	h.cancel()
	<-h.done
}
