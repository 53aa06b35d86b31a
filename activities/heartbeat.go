package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// An activity heartbeats three times per heartbeat timeout: twice the
// margin a late heartbeat needs on a loaded worker, and no more often. Each
// heartbeat is a write to the workflow's state on the server; every 2 s, a
// Job queued behind a quota cost more server writes than its whole cycle.
// The first goes out one interval in: the timeout counts from the start,
// and a short Job sends none.
const (
	heartbeatsPerTimeout = 3
	minHeartbeatInterval = time.Second
)

// heartbeatInterval is how often the activity of ctx heartbeats: 0 for one
// that need not (a local activity, no heartbeat timeout).
func heartbeatInterval(ctx context.Context) time.Duration {
	return heartbeatEvery(activity.GetInfo(ctx))
}

func heartbeatEvery(info activity.Info) time.Duration {
	if info.IsLocalActivity || info.HeartbeatTimeout <= 0 {
		return 0
	}
	return max(info.HeartbeatTimeout/heartbeatsPerTimeout, minHeartbeatInterval)
}

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
// callers, benchmarks) and where no heartbeat is due it does nothing.
func startHeartbeat(ctx context.Context) *heartbeat {
	h := &heartbeat{done: make(chan struct{})}
	var every time.Duration
	if activity.IsActivity(ctx) {
		every = heartbeatInterval(ctx)
	}
	if every <= 0 {
		close(h.done)
		h.cancel = func() {}
		return h
	}
	hctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
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
