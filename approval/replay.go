package approval

import (
	"sync"
	"time"
)

// replayCache remembers the signatures of verified requests until their
// timestamp leaves the acceptance window. Slack does not retry interaction
// requests, so a second copy of one is a replay (or a proxy retrying): it
// is answered 409 and changes nothing. Only verified requests are stored,
// so filling the cache takes the signing secret.
type replayCache struct {
	mu        sync.Mutex
	seen      map[string]int64 // signature → request timestamp (unix s)
	max       int
	window    time.Duration
	lastSweep time.Time
}

func newReplayCache(max int, window time.Duration) *replayCache {
	return &replayCache{seen: make(map[string]int64), max: max, window: window}
}

type reserveResult int

const (
	reserved reserveResult = iota
	replayed
	cacheFull
)

// reserve records key (the request's signature, which covers its timestamp
// and body) unless it was seen. A full cache fails closed.
func (c *replayCache) reserve(key string, ts int64, now time.Time) reserveResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok {
		return replayed
	}
	if len(c.seen) >= c.max || now.Sub(c.lastSweep) > 30*time.Second {
		c.sweep(now)
	}
	if len(c.seen) >= c.max {
		return cacheFull
	}
	c.seen[key] = ts
	return reserved
}

// release forgets key, so a request whose decision failed for a transient
// reason can be retried (the workflow makes a repeated decision harmless).
func (c *replayCache) release(key string) {
	c.mu.Lock()
	delete(c.seen, key)
	c.mu.Unlock()
}

// sweep drops entries whose timestamp is now outside the window: a copy of
// them would be rejected as expired anyway.
func (c *replayCache) sweep(now time.Time) {
	oldest := now.Add(-c.window).Unix()
	for k, ts := range c.seen {
		if ts < oldest {
			delete(c.seen, k)
		}
	}
	c.lastSweep = now
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
