package e2e

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"
	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/worker"
)

// BenchmarkConcurrentCycles starts N single-action autonomous cycles at
// once (N = 10, 50, 200) on the test worker — built by worker.NewActivities
// and worker.New, as production builds it — and, in the same run, N bare
// programs making the same Vault and Kubernetes calls concurrently through
// a client configured like the worker's (worker.RestConfig). It prints
// cycles/s, p50/p99 latency and the throughput ratio, and for each side
// the CPU time per cycle of each part of the stack. Run: make bench.
func BenchmarkConcurrentCycles(b *testing.B) {
	ctx := context.Background()
	rc, err := worker.RestConfig(env.stack.Kubeconfig, env.workerConfig.Kube)
	require.NoError(b, err)
	cs, err := kubernetes.NewForConfig(rc)
	require.NoError(b, err)
	jobs := k8s.NewRunner(cs)
	acts := &activities.Activities{Catalog: env.catalog, Broker: env.broker, Jobs: jobs}
	plan, err := env.catalog.Plan("e2e", []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "bench"}}})
	require.NoError(b, err)

	fmt.Fprintf(os.Stdout, "\nconcurrent single-action autonomous cycles vs. the same calls from a bare program (one worker)\n")
	fmt.Fprintf(os.Stdout, "  %5s  %10s %9s %9s  %10s %9s %9s  %7s\n", "N", "cycles/s", "p50 ms", "p99 ms", "raw ops/s", "p50 ms", "p99 ms", "ratio")
	for _, n := range []int{10, 50, 200} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for b.Loop() {
				stamp := time.Now().UnixNano()
				before := sampleCPU()
				cyc, cycWall := concurrently(n, func(i int) error {
					res, err := env.starter.RunCycle(ctx, contract.CycleRequest{
						AgentID: "e2e", CycleID: fmt.Sprintf("conc-%d-%d", stamp, i),
						Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "bench"}}},
					})
					if err == nil && res.Outcome != contract.OutcomeSucceeded {
						err = fmt.Errorf("outcome %s: %+v", res.Outcome, res.Actions)
					}
					return err
				})
				cycCPU := cpuSince(before)
				before = sampleCPU()
				raw, rawWall := concurrently(n, func(i int) error {
					in := activities.StageInput{WorkflowID: fmt.Sprintf("raw-conc/%d/%d", stamp, i), AgentID: "e2e", Namespace: ns, Action: plan.Actions[0]}
					return rawAction(ctx, acts, jobs, in)
				})
				rawCPU := cpuSince(before)
				c50, c99 := percentiles(cyc)
				r50, r99 := percentiles(raw)
				cps, rps := float64(n)/cycWall.Seconds(), float64(n)/rawWall.Seconds()
				b.ReportMetric(cps, "cycles/s")
				b.ReportMetric(cps/rps, "throughput-ratio")
				fmt.Fprintf(os.Stdout, "  %5d  %10.1f %9.1f %9.1f  %10.1f %9.1f %9.1f  %6.2fx\n",
					n, cps, ms(c50), ms(c99), rps, ms(r50), ms(r99), cps/rps)
				fmt.Fprintf(os.Stdout, "         cycles: %s\n         raw:    %s\n", cycCPU.perCycle(n), rawCPU.perCycle(n))
			}
		})
	}
}

// concurrently runs f(0..n-1) at once and returns each call's latency and
// the wall time of all; any error fails the process loudly.
func concurrently(n int, f func(i int) error) ([]time.Duration, time.Duration) {
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			t0 := time.Now()
			errs[i] = f(i)
			lat[i] = time.Since(t0)
		})
	}
	wg.Wait()
	wall := time.Since(start)
	for _, err := range errs {
		if err != nil {
			panic(err)
		}
	}
	return lat, wall
}

// minimalWorkflow is the baseline for shadow cycles: a local activity and
// one activity, as a shadow cycle has (plan + dry run), doing nothing.
func minimalWorkflow(ctx workflow.Context, n int) (int, error) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	if err := workflow.ExecuteLocalActivity(lctx, noop, n).Get(ctx, &n); err != nil {
		return 0, err
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}})
	err := workflow.ExecuteActivity(actx, noop, n).Get(ctx, &n)
	return n, err
}

// minimalLocalWorkflow is the same two steps as local activities, the
// shape shadow cycles have since staging steps became local activities.
func minimalLocalWorkflow(ctx workflow.Context, n int) (int, error) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	for range 2 {
		if err := workflow.ExecuteLocalActivity(lctx, noop, n).Get(ctx, &n); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// minimalStepsWorkflow runs steps local activities one after another: a
// minimal workflow with as many activities as a shadow cycle has (the
// issue's baseline: "the same number of activities").
func minimalStepsWorkflow(ctx workflow.Context, steps int) (int, error) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	n := 0
	for range steps {
		if err := workflow.ExecuteLocalActivity(lctx, noop, n).Get(ctx, &n); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func noop(_ context.Context, n int) (int, error) { return n + 1, nil }

// cycleShape is how a cycle's history orchestrates: local activities, one
// activity (its Job), local activities.
type cycleShape struct {
	Before, After int
}

// cycleShapeWorkflow orchestrates like a cycle of shape s and does nothing
// else: what Temporal alone costs a cycle on this server.
func cycleShapeWorkflow(ctx workflow.Context, s cycleShape) (int, error) {
	if _, err := minimalStepsWorkflow(ctx, s.Before); err != nil {
		return 0, err
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}})
	if err := workflow.ExecuteActivity(actx, noop, 0).Get(ctx, nil); err != nil {
		return 0, err
	}
	return minimalStepsWorkflow(ctx, s.After)
}

// shapeOf counts a finished cycle's local activities before and after its
// first activity.
func shapeOf(ctx context.Context, b testing.TB, workflowID string) cycleShape {
	var s cycleShape
	activity := false
	for _, ev := range rawHistory(ctx, b, workflowID).Events {
		switch {
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			activity = true
		case ev.GetMarkerRecordedEventAttributes().GetMarkerName() == "LocalActivity" && activity:
			s.After++
		case ev.GetMarkerRecordedEventAttributes().GetMarkerName() == "LocalActivity":
			s.Before++
		}
	}
	return s
}

// minimalWorker runs the minimal baselines on their own task queue of the
// same server.
func minimalWorker(b testing.TB) string {
	const queue = "bench-minimal"
	w := sdkworker.New(env.tc, queue, sdkworker.Options{})
	w.RegisterWorkflow(minimalWorkflow)
	w.RegisterWorkflow(minimalLocalWorkflow)
	w.RegisterWorkflow(minimalStepsWorkflow)
	w.RegisterWorkflow(cycleShapeWorkflow)
	w.RegisterActivity(noop)
	require.NoError(b, w.Start())
	b.Cleanup(w.Stop)
	return queue
}

// BenchmarkShadowThroughput compares shadow cycles (plan, dry-run of the
// rendered Job against the apiserver, audit) with a minimal workflow of the
// same shape on the same server, N at once. Target ratio >= 0.8. Each
// round also prints the CPU time per cycle of every part of the stack and
// how many cores were busy: on a small machine the servers a shadow step
// calls share the cores with Temporal, so the ratio reads with it.
func BenchmarkShadowThroughput(b *testing.B) {
	ctx := context.Background()
	queue := minimalWorker(b)
	const n = 50
	shadowRound := func(n int, stamp int64) time.Duration {
		_, wall := concurrently(n, func(i int) error {
			res, err := env.starter.RunCycle(ctx, contract.CycleRequest{
				AgentID: "e2e-shadow", CycleID: fmt.Sprintf("shadow-bench-%d-%d", stamp, i),
				Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "x"}}},
			})
			if err == nil && (len(res.Actions) != 1 || res.Actions[0].Outcome != contract.OutcomeWouldDo) {
				err = fmt.Errorf("shadow cycle: %+v", res)
			}
			return err
		})
		return wall
	}
	steps := 0 // local activities of a shadow cycle, counted below
	minimalRound := func(n int, stamp int64, wf func(workflow.Context, int) (int, error)) time.Duration {
		name := runtime.FuncForPC(reflect.ValueOf(wf).Pointer()).Name()
		_, wall := concurrently(n, func(i int) error {
			arg := i
			if name == runtime.FuncForPC(reflect.ValueOf(minimalStepsWorkflow).Pointer()).Name() {
				arg = steps
			}
			run, err := env.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("%s-%d-%d", name, stamp, i), TaskQueue: queue}, wf, arg)
			if err != nil {
				return err
			}
			return run.Get(ctx, nil)
		})
		return wall
	}
	// Warm both paths first (the agent's workflow, caches, connections):
	// the figure is the steady state, not the first cycle of a process.
	warm := time.Now().UnixNano()
	shadowRound(10, warm)
	for _, ev := range rawHistory(ctx, b, contract.CycleWorkflowID("e2e-shadow", fmt.Sprintf("shadow-bench-%d-%d", warm, 0))).Events {
		if ev.GetMarkerRecordedEventAttributes().GetMarkerName() == "LocalActivity" {
			steps++
		}
	}
	require.Positive(b, steps, "a shadow cycle runs local activities")
	minimalRound(10, warm, minimalWorkflow)
	minimalRound(10, warm, minimalLocalWorkflow)
	minimalRound(10, warm, minimalStepsWorkflow)
	for b.Loop() {
		stamp := time.Now().UnixNano()
		before := sampleCPU()
		shadowWall := shadowRound(n, stamp)
		shadowCPU := cpuSince(before)
		minWall := minimalRound(n, stamp, minimalWorkflow)
		localWall := minimalRound(n, stamp, minimalLocalWorkflow)
		before = sampleCPU()
		stepsWall := minimalRound(n, stamp, minimalStepsWorkflow)
		stepsCPU := cpuSince(before)
		sps, mps, lps := float64(n)/shadowWall.Seconds(), float64(n)/minWall.Seconds(), float64(n)/localWall.Seconds()
		tps := float64(n) / stepsWall.Seconds()
		b.ReportMetric(sps/mps, "ratio")
		b.ReportMetric(sps/lps, "ratio-local")
		b.ReportMetric(sps/tps, "ratio-same-steps")
		fmt.Fprintf(os.Stdout, "\nshadow cycles vs. a minimal workflow (a local activity + an activity), %d at once: %.1f vs %.1f per s, ratio %.2fx (target >= 0.8x)\n", n, sps, mps, sps/mps)
		fmt.Fprintf(os.Stdout, "shadow cycles vs. a minimal workflow of two local activities, %d at once:      %.1f vs %.1f per s, ratio %.2fx\n", n, sps, lps, sps/lps)
		fmt.Fprintf(os.Stdout, "shadow cycles vs. a minimal workflow of %d local activities (as many as a shadow cycle), %d at once: %.1f vs %.1f per s, ratio %.2fx (target >= 0.8x)\n", steps, n, sps, tps, sps/tps)
		fmt.Fprintf(os.Stdout, "  shadow cycles:          %s\n", shadowCPU.perCycle(n))
		fmt.Fprintf(os.Stdout, "  %d no-op local activities: %s\n", steps, stepsCPU.perCycle(n))
	}
}

// TestHistorySizePerPhase prints the events and bytes of a single-action
// cycle's history in each phase (target: <= 40 events for advisory) and
// fails if advisory exceeds the target.
func TestHistorySizePerPhase(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cases := []struct {
		phase, agent, action string
		approve              bool
	}{
		{"shadow", "e2e-shadow", "quick-write", false},
		{"advisory", "e2e-adv", "quick-write", true},
		{"supervised", "e2e-sup", "quick-write", false},
		{"autonomous", "e2e", "echo", false},
	}
	fmt.Printf("\nhistory of a single-action cycle, per phase\n  %-11s %7s %9s\n", "phase", "events", "bytes")
	for _, c := range cases {
		id := cycleID(t) + "-" + c.phase
		p := map[string]any{"target": "x"}
		if c.action == "echo" {
			p = map[string]any{"text": "x"}
		}
		run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: c.agent, CycleID: id, Actions: []policy.Proposal{{Type: c.action, Params: p}}})
		require.NoError(t, err)
		if c.approve {
			require.Eventually(t, func() bool {
				pend, err := env.starter.Pending(ctx, run.WorkflowID)
				if err != nil || len(pend) == 0 {
					return false
				}
				_, err = env.starter.Decide(ctx, run.WorkflowID, contract.Decision{ActionIndex: 0, ActionHash: pend[0].Action.Hash, Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})
				return err == nil
			}, 30*time.Second, 20*time.Millisecond)
		}
		res, err := run.Get(ctx)
		require.NoError(t, err)
		require.NotEqual(t, contract.OutcomeFailed, res.Outcome)
		h := rawHistory(ctx, t, run.WorkflowID)
		size := 0
		for _, ev := range h.Events {
			size += proto.Size(ev)
		}
		fmt.Printf("  %-11s %7d %9d\n", c.phase, len(h.Events), size)
		if c.phase == "advisory" {
			require.LessOrEqual(t, len(h.Events), 40, "advisory history events")
		}
		// One version marker per cycle, whatever the path (version 6 of
		// "verified-identity" implies the cycle's other changes), and a
		// cycle that only dry-runs sets its search attributes once.
		versions, upserts := 0, 0
		for _, ev := range h.Events {
			if m := ev.GetMarkerRecordedEventAttributes(); m != nil && m.MarkerName == "Version" {
				versions++
			}
			if ev.GetUpsertWorkflowSearchAttributesEventAttributes() != nil {
				upserts++
			}
		}
		assert.Equal(t, 1, versions, "%s: version markers", c.phase)
		if c.phase == "shadow" {
			assert.Equal(t, 2, upserts, "shadow: the SDK's change-version upsert and the cycle's own, at the end")
		}
	}
}
