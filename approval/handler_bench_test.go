package approval

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockhq/airlock/contract"
)

// BenchmarkHandler drives the endpoint over real HTTP at a fixed rate
// (open loop: requests are sent on schedule whether or not earlier ones
// have finished) and reports latency percentiles. The decider answers at
// once, so this measures verification, parsing and the HTTP round trip.
func BenchmarkHandler(b *testing.B) {
	const (
		rate     = 200 // requests per second
		duration = 3 * time.Second
		total    = int(rate * duration / time.Second)
		interval = time.Second / rate
	)
	var decided atomic.Int64
	h, err := NewHandler(HandlerConfig{
		SigningSecret: testSecret,
		Decider: DeciderFunc(func(context.Context, string, contract.Decision) (contract.DecisionResult, error) {
			decided.Add(1)
			return contract.DecisionResult{Status: StatusApproved}, nil
		}),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()

	// Distinct clicks (distinct action_ts), signed now: no replays.
	now := time.Now()
	bodies := make([]string, total)
	sigs := make([]string, total)
	for i := range bodies {
		bodies[i] = formBody(clickPayload(b, clickSpec{User: "U0ALICE", ActionID: ActionApprove,
			Value: buttonValue(b, contract.DecisionApprove), ActionTS: "1700000000." + strconv.Itoa(i)}))
		sigs[i] = sign(testSecret, now.Unix(), bodies[i])
	}
	stamp := strconv.FormatInt(now.Unix(), 10)

	latencies := make([]time.Duration, total)
	var failures atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range total {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(bodies[i]))
			if err != nil {
				failures.Add(1)
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Slack-Request-Timestamp", stamp)
			req.Header.Set("X-Slack-Signature", sigs[i])
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				failures.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			latencies[i] = time.Since(t0)
			if resp.StatusCode != http.StatusOK {
				failures.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	if f := failures.Load(); f > 0 {
		b.Errorf("%d of %d requests failed", f, total)
	}
	if d := decided.Load(); d != int64(total) {
		b.Errorf("decided %d of %d", d, total)
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[min(total-1, int(p*float64(total)))] }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p50, p99, worst := pct(0.50), pct(0.99), latencies[total-1]
	fmt.Printf("BenchmarkHandler: %d signed requests at %d/s over %s (achieved %.0f/s): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		total, rate, duration, float64(total)/elapsed.Seconds(), ms(p50), ms(p99), ms(worst))
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(worst), "max-ms")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "req/s")
	if p99 > 50*time.Millisecond {
		b.Logf("p99 %.2f ms is above the 50 ms target", ms(p99))
	}
}
