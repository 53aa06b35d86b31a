package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

// killBenchAgent runs 20 Jobs at once (quota pods 25, running_jobs 25).
const killBenchAgent, killBenchNS, killBenchJobs = "e2e-kill-bench", "airlock-e2e-kill-bench", 20

// BenchmarkKillSwitch measures the kill switch under load: the agent runs
// 20 cycles whose Jobs (bench-sleep, 10 minutes) all have their Pod and
// their leased token, then one starter.Kill call stops it. Per kill it
// takes call → last Job (and Pod) gone and call → last lease revoked (the
// worker's clock, which is this process's), and prints p50/max over the
// kills. Between kills two approvers resume the agent (in shadow, where
// its reads still run). Run: make bench (-benchtime 30x).
func BenchmarkKillSwitch(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	var gone, revoked, total []time.Duration
	for b.Loop() {
		b.StopTimer()
		runs := startKillBenchJobs(ctx, b)
		b.StartTimer()
		start := time.Now()
		rep, err := env.starter.Kill(ctx, killBenchAgent, contract.KillRequest{Reason: "bench: 20 running Jobs", By: "U1", Via: "api"})
		elapsed := time.Since(start)
		b.StopTimer()
		require.NoError(b, err)
		// The cancelled cycles delete their own Jobs too: the sweep reports
		// only those it deleted first. All 20 must be gone, whoever did it.
		require.Len(b, rep.CyclesCanceled, killBenchJobs, "%+v", rep)
		require.NotEmpty(b, rep.RevokedAccessors)
		gone = append(gone, rep.JobsGoneAt.Sub(start))
		revoked = append(revoked, rep.RevokedAt.Sub(start))
		total = append(total, elapsed)
		jobs, pods := killBenchObjects(ctx, b)
		require.Zero(b, jobs+pods, "the kill returned with Jobs or Pods left")
		for _, run := range runs {
			_, err := run.Get(ctx)
			var canceled *temporal.CanceledError
			require.True(b, errors.As(err, &canceled), "cycle %s ended %v", run.WorkflowID, err)
		}
		_, err = env.starter.ResumeAgent(ctx, killBenchAgent, contract.ResumeRequest{By: []string{"U1", "U2"}, Reason: "bench: next run", Via: "api"})
		require.NoError(b, err)
		b.StartTimer()
	}
	g50, gmax := p50max(gone)
	r50, rmax := p50max(revoked)
	t50, tmax := p50max(total)
	b.ReportMetric(ms(g50), "p50-jobs-gone-ms")
	b.ReportMetric(ms(gmax), "max-jobs-gone-ms")
	fmt.Fprintf(os.Stdout, "\nkill switch with %d running Jobs, %d kills: call → last Job gone p50 %.0f ms, max %.0f ms; → last lease revoked p50 %.0f ms, max %.0f ms; call returned p50 %.0f ms, max %.0f ms\n",
		killBenchJobs, len(gone), ms(g50), ms(gmax), ms(r50), ms(rmax), ms(t50), ms(tmax))
}

// startKillBenchJobs starts killBenchJobs one-action cycles of the agent
// and returns once every Job has its Pod (so every token is leased).
func startKillBenchJobs(ctx context.Context, b *testing.B) []*starter.Run {
	stamp := time.Now().UnixNano()
	runs := make([]*starter.Run, killBenchJobs)
	errs := make([]error, killBenchJobs)
	var wg sync.WaitGroup
	for i := range killBenchJobs {
		wg.Go(func() {
			runs[i], errs[i] = env.starter.Start(ctx, contract.CycleRequest{AgentID: killBenchAgent,
				CycleID: fmt.Sprintf("kill-bench-%d-%d", stamp, i), Actions: []policy.Proposal{{Type: "bench-sleep"}}})
		})
	}
	wg.Wait()
	require.NoError(b, errors.Join(errs...))
	require.Eventually(b, func() bool {
		_, pods := killBenchObjects(ctx, b)
		return pods == killBenchJobs
	}, 2*time.Minute, 50*time.Millisecond, "%d Jobs with their Pod", killBenchJobs)
	return runs
}

func killBenchObjects(ctx context.Context, b *testing.B) (jobs, pods int) {
	sel := metav1.ListOptions{LabelSelector: k8s.LabelAgent + "=" + k8s.AgentLabel(killBenchAgent)}
	jl, err := env.kube.BatchV1().Jobs(killBenchNS).List(ctx, sel)
	require.NoError(b, err)
	pl, err := env.kube.CoreV1().Pods(killBenchNS).List(ctx, sel)
	require.NoError(b, err)
	return len(jl.Items), len(pl.Items)
}

// p50max returns the median and the maximum.
func p50max(d []time.Duration) (time.Duration, time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}
