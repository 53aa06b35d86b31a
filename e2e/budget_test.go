package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
)

// budgetAgent has budgets {pending_approvals: 1, running_jobs: 1}; no
// other test uses it.
const budgetAgent, budgetNS = "e2e-budget", "airlock-e2e-budget"

func jobExists(ctx context.Context, t *testing.T, namespace, name string) bool {
	t.Helper()
	_, err := env.kube.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
	if k8serrors.IsNotFound(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

// An agent over its pending-approval budget (OWASP agentic T10: humans
// flooded with requests) gets a clear refusal naming the budget; nothing
// is posted to Slack, nothing waits, nothing is leased or created. Once the
// waiting approval is decided the agent may ask again.
func TestBudgetPendingApprovalsRefusesAndPostsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	write := []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}
	first, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: budgetAgent, CycleID: cycleID(t) + "-first", Actions: write})
	require.NoError(t, err)
	waitPosted(t, first.WorkflowID)

	start := time.Now()
	second, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: budgetAgent, CycleID: cycleID(t) + "-second", Actions: write})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 30*time.Second, "refused, not queued (the approval timeout is 2m)")
	assert.Equal(t, contract.OutcomeDenied, second.Outcome)
	require.Len(t, second.Actions, 1)
	a := second.Actions[0]
	assert.Equal(t, `budget "pending_approvals" exhausted: 1 of 1 approvals already wait for agent e2e-budget`, a.Error)
	assert.Equal(t, policy.BudgetPendingApprovals, a.Budget)
	assert.Empty(t, a.LeaseAccessor)
	_, posted := env.slack.message("chat.postMessage", second.WorkflowID)
	assert.False(t, posted, "nothing was posted for the refused approval")
	assert.False(t, jobExists(ctx, t, budgetNS, k8s.JobName(second.WorkflowID, 0)), "no Job")
	assert.NotContains(t, activitiesRun(ctx, t, second.WorkflowID), "StageAction", "no staging was even scheduled")
	pend, err := env.starter.Pending(ctx, second.WorkflowID)
	if err == nil {
		assert.Empty(t, pend, "nothing waits")
	}
	saveHistory(ctx, t, second.WorkflowID, "budget-refused-approval")

	out, err := cli(t, "agent", "show", budgetAgent)
	require.NoError(t, err, out)
	assert.Contains(t, out, "pending_approvals 1/1")
	assert.Contains(t, out, "approval_requests_per_hour 1/30")
	assert.Contains(t, out, "refused     pending_approvals 1 (over budget, never queued)")
	fmt.Fprintf(os.Stdout, "\n$ airlock agent show %s\n%s\n", budgetAgent, out)

	// Decided: the hold is released and the next approval is asked.
	pending, err := env.starter.Pending(ctx, first.WorkflowID)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	_, err = env.starter.Decide(ctx, first.WorkflowID, contract.Decision{ActionIndex: 0, ActionHash: pending[0].Action.Hash,
		Kind: contract.DecisionDeny, Approver: "U1", Via: "cli"})
	require.NoError(t, err)
	res, err := first.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	third, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: budgetAgent, CycleID: cycleID(t) + "-third", Actions: write})
	require.NoError(t, err)
	waitPosted(t, third.WorkflowID)
	pending, err = env.starter.Pending(ctx, third.WorkflowID)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	_, err = env.starter.Decide(ctx, third.WorkflowID, contract.Decision{ActionIndex: 0, ActionHash: pending[0].Action.Hash,
		Kind: contract.DecisionDeny, Approver: "U2", Via: "cli"})
	require.NoError(t, err)
	_, err = third.Get(ctx)
	require.NoError(t, err)
	st, err := env.starter.AgentState(ctx, budgetAgent)
	require.NoError(t, err)
	assert.Zero(t, st.Budget.Use(time.Now()).PendingApprovals, "every approval was decided: nothing is held")
}

// An agent at its running-Job budget gets its next action refused by name:
// no Job is created, no credential leased, and the Job that runs is
// untouched.
func TestBudgetRunningJobsRefusesAndLeasesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	long := []policy.Proposal{{Type: "long-read"}}
	first, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: budgetAgent, CycleID: cycleID(t) + "-first", Actions: long})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return len(podNames(ctx, budgetNS, k8s.JobName(first.WorkflowID, 0))) == 1
	}, 30*time.Second, 50*time.Millisecond, "the first Job runs")

	second, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: budgetAgent, CycleID: cycleID(t) + "-second", Actions: long})
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeDenied, second.Outcome)
	a := second.Actions[0]
	assert.Equal(t, `budget "running_jobs" exhausted: 1 of 1 Jobs already run for agent e2e-budget`, a.Error)
	assert.Equal(t, policy.BudgetRunningJobs, a.Budget)
	assert.Empty(t, a.LeaseAccessor, "nothing was leased")
	assert.False(t, jobExists(ctx, t, budgetNS, k8s.JobName(second.WorkflowID, 0)), "no Job was created")
	assert.NotContains(t, activitiesRun(ctx, t, second.WorkflowID), "RunJob")
	saveHistory(ctx, t, second.WorkflowID, "budget-refused-run")

	res, err := first.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "the running Job was untouched: %+v", res.Actions)
	st, err := env.starter.AgentState(ctx, budgetAgent)
	require.NoError(t, err)
	assert.Zero(t, st.Budget.Use(time.Now()).RunningJobs, "the Job's hold was released")
	assert.GreaterOrEqual(t, st.Counters.BudgetRefusals[policy.BudgetRunningJobs], 1)
}

// Many of one agent's reservations at once — a burst of cycles staging, or
// of approvals being posted — get exactly the budget, and reach the agent's
// workflow in a few Updates: the server admits only 10 Updates in flight
// per workflow and makes every further caller back off for seconds, so a
// worker sends one agent's reservations together (activities/agent_batches.go).
func TestBudgetBurstOfReservationsIsExactAndBatched(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const agent, asks = "e2e-burst", 60
	// A first cycle starts the agent's workflow.
	res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agent, CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "first"}}}})
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	before := countEvents(ctx, t, contract.AgentWorkflowID(agent), enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)

	acts := &activities.Activities{Catalog: env.catalog, Temporal: env.tc}
	errs := make([]error, asks)
	var wg sync.WaitGroup
	stamp := time.Now().UnixNano()
	for i := range asks {
		wg.Go(func() {
			errs[i] = activities.ReserveApproval(ctx, acts, agent, fmt.Sprintf("cycle/%s/burst-%d-%d", agent, stamp, i), 0, time.Now().Add(time.Hour))
		})
	}
	wg.Wait()
	granted := 0
	for _, err := range errs {
		if err == nil {
			granted++
			continue
		}
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, err, &appErr)
		assert.Equal(t, contract.ErrTypeBudgetExhausted, appErr.Type())
		assert.Contains(t, appErr.Message(), `budget "pending_approvals" exhausted: 10 of 10`)
	}
	assert.Equal(t, 10, granted, "exactly the budget is granted")
	updates := countEvents(ctx, t, contract.AgentWorkflowID(agent), enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) - before
	t.Logf("%d reservations reached the agent's workflow in %d Updates", asks, updates)
	assert.Less(t, updates, asks/2, "reservations made at once go together")

	// Those cycles end at once: their reports go together too, each counted
	// once, each releasing its cycle's hold.
	signals := countEvents(ctx, t, contract.AgentWorkflowID(agent), enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
	was, err := env.starter.AgentState(ctx, agent)
	require.NoError(t, err)
	for i := range asks {
		wg.Go(func() {
			_, errs[i] = acts.ReportCycle(ctx, contract.CycleReport{WorkflowID: fmt.Sprintf("cycle/%s/burst-%d-%d", agent, stamp, i), AgentID: agent, Outcome: "denied"})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		st, err := env.starter.AgentState(ctx, agent)
		return err == nil && st.Counters.Cycles == was.Counters.Cycles+asks && st.Budget.Held[policy.BudgetApproval] == 0
	}, 30*time.Second, 50*time.Millisecond, "every report counted, every hold released")
	signals = countEvents(ctx, t, contract.AgentWorkflowID(agent), enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) - signals
	t.Logf("%d reports reached the agent's workflow in %d signals", asks, signals)
	assert.Less(t, signals, asks, "reports of cycles ending at once go together")
	saveHistory(ctx, t, contract.AgentWorkflowID(agent), "agent/batched-reservations-and-reports")
}

// countEvents counts a workflow's history events of one type, over every run.
func countEvents(ctx context.Context, t *testing.T, workflowID string, typ enums.EventType) int {
	t.Helper()
	resp, err := env.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("WorkflowId = %q", workflowID)})
	require.NoError(t, err)
	n := 0
	for _, e := range resp.Executions {
		it := env.tc.GetWorkflowHistory(ctx, workflowID, e.Execution.RunId, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			if ev.EventType == typ {
				n++
			}
		}
	}
	return n
}
