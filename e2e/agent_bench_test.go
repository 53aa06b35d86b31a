package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// BenchmarkAgentReports measures how many cycle reports one agent's Agent
// workflow absorbs per second (each with an action as evidence), and its
// history per 1,000 cycles over all its runs (continue-as-new bounds each
// run). Reports are the signals cycles send when they end.
func BenchmarkAgentReports(b *testing.B) {
	ctx := context.Background()
	const n = 1000
	const agent = "e2e-reports"
	for b.Loop() {
		id := fmt.Sprintf("agent/%s-%d", agent, time.Now().UnixNano())
		ag, ok := env.catalog.Agent(agent)
		require.True(b, ok)
		seed := contract.SeedFor(ag)
		run, err := env.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueue}, contract.AgentWorkflowName,
			contract.AgentInput{Seed: &seed})
		require.NoError(b, err)
		start := time.Now()
		sem := make(chan struct{}, 50)
		var wg sync.WaitGroup
		for i := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				r := contract.CycleReport{WorkflowID: fmt.Sprintf("cycle/%s/r%d", agent, i), AgentID: agent, Outcome: "succeeded",
					Actions: map[string]int{"succeeded": 1},
					Details: []contract.ActionReport{{Type: "echo", Class: policy.ClassRead, Phase: policy.PhaseAutonomous, Mode: policy.ModeRun,
						Outcome: contract.OutcomeSucceeded, Ran: true}}}
				if err := env.tc.SignalWorkflow(ctx, id, "", contract.SignalReportCycle, r); err != nil {
					panic(err)
				}
			})
		}
		wg.Wait()
		require.Eventually(b, func() bool {
			v, err := env.tc.QueryWorkflow(ctx, id, "", contract.QueryAgentState)
			if err != nil {
				return false
			}
			var st contract.AgentState
			return v.Get(&st) == nil && st.Counters.Cycles == n
		}, 5*time.Minute, 50*time.Millisecond)
		took := time.Since(start)

		// Follow the runs from the first: continue-as-new hands over state.
		events, runs, longest := 0, 0, 0
		runID := run.GetRunID()
		for runID != "" {
			runs++
			it := env.tc.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			next, inRun := "", 0
			for it.HasNext() {
				e, err := it.Next()
				require.NoError(b, err)
				inRun++
				if a := e.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
					next = a.GetNewExecutionRunId()
				}
			}
			events += inRun
			longest = max(longest, inRun)
			runID = next
		}
		require.NoError(b, env.tc.TerminateWorkflow(ctx, id, "", "benchmark done"))
		b.ReportMetric(float64(n)/took.Seconds(), "reports/s")
		b.ReportMetric(float64(events)*1000/float64(n), "events/1000-cycles")
		fmt.Fprintf(os.Stdout, "\nAgent workflow: %d cycle reports (50 signalling at once) absorbed in %s: %.0f reports/s; history %d events over %d runs (longest run %d events): %.0f events per 1,000 cycles\n",
			n, took.Round(time.Millisecond), float64(n)/took.Seconds(), events, runs, longest, float64(events)*1000/float64(n))
	}
}
