package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// budgetSeed is agent "adv" with the given budgets.
func budgetSeed(b policy.Budgets) *contract.AgentSeed {
	s := advSeed
	s.Budgets = b
	return &s
}

func hold(cycle string, index int, kind policy.BudgetKind) contract.BudgetHold {
	return contract.BudgetHold{AgentID: "adv", WorkflowID: "cycle/adv/" + cycle, Index: index, Kind: kind}
}

// useAt computes the agent's budget use at a moment (workflow time).
func (s *agentSuite) useAt(t *testing.T, at time.Duration, use *policy.BudgetUse) {
	s.env.RegisterDelayedCallback(func() {
		v, err := s.env.QueryWorkflow(contract.QueryAgentState)
		require.NoError(t, err)
		var st contract.AgentState
		require.NoError(t, v.Get(&st))
		*use = st.Budget.Use(s.env.Now())
	}, at)
}

// release gives a hold back at a moment, as ReleaseAction does (a signal).
func (s *agentSuite) release(at time.Duration, h contract.BudgetHold) {
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.SignalRelease, h) }, at)
}

// ask is one reserve request of a test, released right after if release.
type ask struct {
	hold    contract.BudgetHold
	release bool
}

// Each budget refuses the hold that would exceed it with an error naming
// the budget; the refusal changes nothing.
func TestAgentBudgetRefusesOverEachBudget(t *testing.T) {
	run, approval := policy.BudgetRun, policy.BudgetApproval
	tests := map[string]struct {
		budgets policy.Budgets
		asks    []ask // the last one is refused
		want    string
		use     policy.BudgetUse
	}{
		"running_jobs": {
			policy.Budgets{RunningJobs: 2},
			[]ask{{hold("c1", 0, run), false}, {hold("c2", 0, run), false}, {hold("c3", 0, run), false}},
			`budget "running_jobs" exhausted: 2 of 2 Jobs already run for agent adv`,
			policy.BudgetUse{RunningJobs: 2, ActionsLastHour: 2},
		},
		"actions_per_hour, though every Job ended": {
			policy.Budgets{ActionsPerHour: 2},
			[]ask{{hold("c1", 0, run), true}, {hold("c2", 0, run), true}, {hold("c3", 0, run), false}},
			`budget "actions_per_hour" exhausted: agent adv already started 2 of 2 actions in the last hour`,
			policy.BudgetUse{ActionsLastHour: 2},
		},
		"pending_approvals": {
			policy.Budgets{PendingApprovals: 1},
			[]ask{{hold("c1", 0, approval), false}, {hold("c2", 0, approval), false}},
			`budget "pending_approvals" exhausted: 1 of 1 approvals already wait for agent adv`,
			policy.BudgetUse{PendingApprovals: 1, ApprovalRequestsLastHour: 1},
		},
		"approval_requests_per_hour, though every approval was decided": {
			policy.Budgets{ApprovalRequestsPerHour: 2},
			[]ask{{hold("c1", 0, approval), true}, {hold("c2", 0, approval), true}, {hold("c3", 0, approval), false}},
			`budget "approval_requests_per_hour" exhausted: agent adv already asked for 2 of 2 approvals in the last hour`,
			policy.BudgetUse{ApprovalRequestsLastHour: 2},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newAgentEnv(t)
			var log updateLog
			until := s.env.Now().Add(24 * time.Hour)
			for i, a := range tc.asks {
				at := time.Duration(i+1) * time.Minute
				s.update(at, &log, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: a.hold, Until: until})
				if a.release {
					s.release(at+time.Second, a.hold)
				}
			}
			var use policy.BudgetUse
			s.useAt(t, 30*time.Minute, &use)
			s.run(contract.AgentInput{Seed: budgetSeed(tc.budgets)}, time.Hour)

			require.Len(t, log.failed, 1, "%v", log.failed)
			assert.Contains(t, log.failed[0], tc.want)
			assert.Empty(t, log.rejected)
			assert.Equal(t, tc.use, use)
		})
	}
}

// The refusal carries the budget in its details, for the cycle to name it.
func TestAgentBudgetRefusalNamesTheBudget(t *testing.T) {
	s := newAgentEnv(t)
	var errs []error
	s.env.RegisterDelayedCallback(func() {
		for _, c := range []string{"c1", "c2"} {
			s.env.UpdateWorkflow(contract.UpdateReserve, "", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(error) {},
				OnComplete: func(_ any, err error) {
					if err != nil {
						errs = append(errs, err)
					}
				}},
				contract.ReserveRequest{BudgetHold: hold(c, 0, policy.BudgetApproval)})
		}
	}, time.Minute)
	s.run(contract.AgentInput{Seed: budgetSeed(policy.Budgets{PendingApprovals: 1})}, time.Hour)
	require.Len(t, errs, 1)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, errs[0], &appErr)
	assert.Equal(t, contract.ErrTypeBudgetExhausted, appErr.Type())
	var be policy.BudgetError
	require.NoError(t, appErr.Details(&be))
	assert.Equal(t, policy.BudgetError{Budget: policy.BudgetPendingApprovals, AgentID: "adv", Used: 1, Limit: 1}, be)
}

// Many cycles asking at the same instant get exactly the budget: the check
// and the hold are one step of the single-threaded Agent workflow.
func TestAgentBudgetIsAtomicUnderConcurrentRequests(t *testing.T) {
	s := newAgentEnv(t)
	granted, refused := 0, 0
	s.env.RegisterDelayedCallback(func() {
		for i := range 20 {
			s.env.UpdateWorkflow(contract.UpdateReserve, "", &testsuite.TestUpdateCallback{
				OnAccept: func() {}, OnReject: func(error) {}, OnComplete: func(_ any, err error) {
					if err != nil {
						refused++
					} else {
						granted++
					}
				},
			}, contract.ReserveRequest{BudgetHold: hold("c"+string(rune('a'+i)), 0, policy.BudgetRun)})
		}
	}, time.Minute)
	var st contract.AgentState
	s.stateAt(t, 2*time.Minute, &st)
	s.run(contract.AgentInput{Seed: budgetSeed(policy.Budgets{RunningJobs: 3})}, time.Hour)
	assert.Equal(t, 3, granted)
	assert.Equal(t, 17, refused)
	assert.Equal(t, map[policy.BudgetKind]int{policy.BudgetRun: 3}, st.Budget.Held)
	assert.Empty(t, st.Budget.Holds, "the state query counts the holds, continue-as-new carries them")
}

// Holds are idempotent by (cycle, action, kind); a Job's hold replaces its
// action's approval hold; releases and the cycle's report give them back;
// a hold nobody releases lapses.
func TestAgentBudgetHoldsAreIdempotentAndReleased(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	until := s.env.Now().Add(24 * time.Hour)
	r := func(h contract.BudgetHold) contract.ReserveRequest {
		return contract.ReserveRequest{BudgetHold: h, Until: until}
	}
	s.update(1*time.Minute, &log, contract.UpdateReserve, r(hold("c1", 0, policy.BudgetApproval)))
	s.update(2*time.Minute, &log, contract.UpdateReserve, r(hold("c1", 0, policy.BudgetApproval))) // a reminder
	var approvalHeld contract.AgentState
	s.stateAt(t, 2*time.Minute+time.Second, &approvalHeld)
	s.update(3*time.Minute, &log, contract.UpdateReserve, r(hold("c1", 0, policy.BudgetRun))) // approved: it runs
	s.update(4*time.Minute, &log, contract.UpdateReserve, r(hold("c1", 0, policy.BudgetRun))) // staging retried
	var running contract.AgentState
	s.stateAt(t, 4*time.Minute+time.Second, &running)
	s.release(5*time.Minute, hold("c1", 0, policy.BudgetRun))
	s.release(6*time.Minute, hold("c1", 0, policy.BudgetRun)) // released twice: nothing changes
	s.update(7*time.Minute, &log, contract.UpdateReserve, r(hold("c2", 0, policy.BudgetRun)))
	s.update(7*time.Minute, &log, contract.UpdateReserve, r(hold("c2", 1, policy.BudgetApproval)))
	s.update(8*time.Minute, &log, contract.UpdateReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c2", AgentID: "adv", Outcome: "canceled"})
	var reported contract.AgentState
	s.stateAt(t, 8*time.Minute+time.Second, &reported)
	s.update(9*time.Minute, &log, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: hold("c3", 0, policy.BudgetRun), Until: s.env.Now().Add(20 * time.Minute)})
	var lapsed policy.BudgetUse
	s.useAt(t, 30*time.Minute, &lapsed)
	s.update(31*time.Minute, &log, contract.UpdateReserve, r(contract.BudgetHold{AgentID: "other", WorkflowID: "cycle/other/c1", Kind: policy.BudgetRun}))
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)

	require.Len(t, log.rejected, 1, "%v", log.rejected)
	assert.Contains(t, log.rejected[0], "cycle/other/c1 is not a cycle of agent adv")
	assert.Empty(t, log.failed)
	assert.Equal(t, contract.ReserveResult{Held: true, Use: policy.BudgetUse{PendingApprovals: 1, ApprovalRequestsLastHour: 1}}, log.completed[1],
		"a reminder holds the same approval")
	assert.Equal(t, contract.ReserveResult{Held: true, Use: policy.BudgetUse{RunningJobs: 1, ActionsLastHour: 1, ApprovalRequestsLastHour: 1}}, log.completed[3],
		"a retried staging holds the same Job")

	assert.Equal(t, map[policy.BudgetKind]int{policy.BudgetApproval: 1}, approvalHeld.Budget.Held)
	assert.Equal(t, map[policy.BudgetKind]int{policy.BudgetRun: 1}, running.Budget.Held, "the Job's hold replaced the approval's")
	assert.Empty(t, reported.Budget.Held, "the report released what the cycle held")
	assert.Equal(t, policy.BudgetUse{ActionsLastHour: 3, ApprovalRequestsLastHour: 2}, lapsed,
		"the hold nobody released lapsed at its Until; what started still counts for the hour")
}

// An action counts for a sliding hour (per minute): after it, the agent
// may act again.
func TestAgentBudgetHourSlides(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	for i, at := range []time.Duration{time.Minute, 30 * time.Minute, 63 * time.Minute} {
		h := hold("c"+string(rune('1'+i)), 0, policy.BudgetRun)
		s.update(at, &log, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: h})
		s.release(at+time.Second, h)
	}
	s.run(contract.AgentInput{Seed: budgetSeed(policy.Budgets{ActionsPerHour: 1})}, 2*time.Hour)
	require.Len(t, log.failed, 1, "%v", log.failed)
	assert.Contains(t, log.failed[0], `budget "actions_per_hour" exhausted`)
	assert.Len(t, log.completed, 2, "granted at 1m and 63m")
}

// A rollback is counted but never refused; a kill clears every hold.
func TestAgentBudgetCompensationAndKill(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	s.update(time.Minute, &log, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: hold("c1", 0, policy.BudgetRun)})
	s.update(2*time.Minute, &log, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: hold("c1", 10000, policy.BudgetRun), Compensation: true})
	var both policy.BudgetUse
	s.useAt(t, 3*time.Minute, &both)
	s.update(4*time.Minute, &log, contract.UpdateKill, contract.KillRequest{Reason: "runaway", By: "U1"})
	var killed contract.AgentState
	s.stateAt(t, 5*time.Minute, &killed)
	s.run(contract.AgentInput{Seed: budgetSeed(policy.Budgets{RunningJobs: 1, ActionsPerHour: 1})}, time.Hour)
	assert.Empty(t, log.rejected)
	assert.Empty(t, log.failed)
	assert.Equal(t, policy.BudgetUse{RunningJobs: 2, ActionsLastHour: 2}, both, "the rollback runs over budget, and counts")
	assert.Empty(t, killed.Budget.Holds, "nothing of a killed agent runs or waits")
}

// The limits come from the catalog (the seed, then catalog signals).
func TestAgentBudgetLimitsFollowTheCatalog(t *testing.T) {
	s := newAgentEnv(t)
	var seeded contract.AgentState
	s.stateAt(t, time.Minute, &seeded)
	changed := *budgetSeed(policy.Budgets{RunningJobs: 20})
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.SignalAgentCatalog, changed) }, 2*time.Minute)
	var later contract.AgentState
	s.stateAt(t, 3*time.Minute, &later)
	s.run(contract.AgentInput{}, time.Hour) // seeded from the test catalog: no budgets, the defaults
	assert.Equal(t, policy.Budgets{ActionsPerHour: 120, RunningJobs: 10, PendingApprovals: 5, ApprovalRequestsPerHour: 30}, seeded.Budget.Limits)
	assert.Equal(t, 20, later.Budget.Limits.RunningJobs)
}

// A Job over budget is denied, naming the budget; nothing runs, nothing is
// leased, and the agent counts the refusal.
func TestCycleRunOverBudgetIsDeniedNamingTheBudget(t *testing.T) {
	s := newEnv(t)
	be := policy.BudgetError{Budget: policy.BudgetRunningJobs, AgentID: "auto", Used: 10, Limit: 10}
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(activities.StageOutput{},
		temporal.NewNonRetryableApplicationError(be.Error(), contract.ErrTypeBudgetExhausted, nil, be))
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
	s.execute(request("auto", inspect, scale))
	var res contract.CycleResult
	require.NoError(t, s.env.GetWorkflowResult(&res))

	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	a := res.Actions[0]
	assert.Equal(t, contract.OutcomeDenied, a.Outcome)
	assert.Equal(t, `budget "running_jobs" exhausted: 10 of 10 Jobs already run for agent auto`, a.Error)
	assert.Equal(t, policy.BudgetRunningJobs, a.Budget)
	assert.Empty(t, a.LeaseAccessor)
	assert.Equal(t, contract.OutcomeSkipped, res.Actions[1].Outcome, "refused, not queued: the rest is skipped")
	s.env.AssertNotCalled(t, "RunJob", mock.Anything, mock.Anything)
	require.Len(t, s.reports, 1)
	assert.Equal(t, map[string]int{policy.BudgetRunningJobs: 1}, s.reports[0].Refusals)
	assert.Zero(t, s.reports[0].Denials, "no human denied it")
}

// An approval over budget is denied at once, naming the budget: no message
// (the worker refused before posting), no wait for a decision.
func TestCycleApprovalOverBudgetIsDeniedAtOnce(t *testing.T) {
	s := newEnv(t)
	start := s.env.Now()
	be := policy.BudgetError{Budget: policy.BudgetPendingApprovals, AgentID: "adv", Used: 5, Limit: 5}
	s.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(contract.MessageRef{},
		temporal.NewNonRetryableApplicationError(be.Error(), contract.ErrTypeBudgetExhausted, nil, be))
	s.execute(request("adv", scale))
	var res contract.CycleResult
	require.NoError(t, s.env.GetWorkflowResult(&res))

	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	a := res.Actions[0]
	assert.Equal(t, `budget "pending_approvals" exhausted: 5 of 5 approvals already wait for agent adv`, a.Error)
	assert.Equal(t, policy.BudgetPendingApprovals, a.Budget)
	assert.Less(t, s.env.Now().Sub(start), time.Minute, "refused, not queued: no wait for the 10m approval timeout")
	s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	s.env.AssertNotCalled(t, contract.ActivityUpdateApproval, mock.Anything, mock.Anything)
	s.env.AssertNumberOfCalls(t, contract.ActivityPostApproval, 1)
	require.Len(t, s.reports, 1)
	assert.Equal(t, map[string]int{policy.BudgetPendingApprovals: 1}, s.reports[0].Refusals)

	var found bool
	for _, e := range auditOf(t, s) {
		if e.Kind == contract.AuditResult && e.Data["budget"] == policy.BudgetPendingApprovals {
			found = true
		}
	}
	assert.True(t, found, "the audit trail names the budget")
}

// A rollback is staged as a compensation (counted, never refused).
func TestRollbackIsStagedAsACompensation(t *testing.T) {
	s := newEnv(t)
	var staged []activities.StageInput
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.StageInput) (activities.StageOutput, error) {
			staged = append(staged, in)
			return stageOK(ctx, in)
		})
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: false, ExitCode: 1}, nil).Once()
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true}, nil)
	var released []activities.ReleaseInput
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ReleaseInput) (activities.ReleaseOutput, error) {
			released = append(released, in)
			return activities.ReleaseOutput{}, nil
		})
	s.execute(request("auto", scale))
	require.NoError(t, s.env.GetWorkflowError())
	require.Len(t, staged, 2)
	assert.False(t, staged[0].Compensation)
	assert.True(t, staged[1].Compensation, "the rollback")
	require.Len(t, released, 2)
	assert.Equal(t, activities.ReleaseInput{Namespace: "agents-auto", JobName: released[0].JobName, LeaseAccessor: "acc-scale",
		AgentID: "auto", WorkflowID: "cycle/auto/c1", Index: 0}, released[0], "release names the hold to give back")
}

// Continue-as-new carries the holds and the hour's counts.
func TestAgentBudgetSurvivesContinueAsNew(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	s.update(time.Minute, &log, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: hold("c1", 0, policy.BudgetRun)})
	s.env.ExecuteWorkflow(contract.AgentWorkflowName, contract.AgentInput{Seed: budgetSeed(policy.Budgets{RunningJobs: 1}), Limits: contract.AgentLimits{MaxUpdates: 1}})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, s.env.GetWorkflowError(), &can)
	var next contract.AgentInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Len(t, next.State.Budget.Holds, 1)
	assert.Equal(t, "cycle/adv/c1", next.State.Budget.Holds[0].WorkflowID)
	assert.Equal(t, 1, lastHourOf(next.State.Budget.Actions))
	assert.Equal(t, 1, next.State.Budget.Limits.RunningJobs)

	s2 := newAgentEnv(t)
	var log2 updateLog
	s2.update(time.Minute, &log2, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: hold("c2", 0, policy.BudgetRun)})
	s2.run(contract.AgentInput{State: next.State}, time.Hour)
	require.Len(t, log2.failed, 1, "the next run still counts the running Job")
	assert.Contains(t, log2.failed[0], `budget "running_jobs" exhausted: 1 of 1`)
}

func lastHourOf(ms []contract.MinuteCount) int {
	n := 0
	for _, m := range ms {
		n += m.N
	}
	return n
}

// A release that arrives with a reservation counts first: update handlers
// run before the main loop, so the handler drains releases itself.
func TestAgentBudgetReleaseArrivingWithAReservationCountsFirst(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	s.update(time.Minute, &log, contract.UpdateReserve, contract.ReserveRequest{BudgetHold: hold("c1", 0, policy.BudgetRun)})
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalRelease, hold("c1", 0, policy.BudgetRun))
		s.env.UpdateWorkflow(contract.UpdateReserve, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { log.rejected = append(log.rejected, err.Error()) },
			OnComplete: func(v any, err error) {
				if err != nil {
					log.failed = append(log.failed, err.Error())
				} else {
					log.completed = append(log.completed, v)
				}
			},
		}, contract.ReserveRequest{BudgetHold: hold("c2", 0, policy.BudgetRun)})
	}, 2*time.Minute)
	s.run(contract.AgentInput{Seed: budgetSeed(policy.Budgets{RunningJobs: 1})}, time.Hour)
	assert.Empty(t, log.failed)
	assert.Len(t, log.completed, 2)
}

// A batch of reservations (what a worker sends for an agent's concurrent
// stagings) is answered request by request, exactly as one Update each
// would be: granted up to the budget, refused beyond it naming it, a held
// one granted as held, a malformed one answered on its own. An empty batch
// is rejected.
func TestAgentBudgetReserveBatch(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	until := s.env.Now().Add(time.Hour)
	r := func(h contract.BudgetHold) contract.ReserveRequest {
		return contract.ReserveRequest{BudgetHold: h, Until: until}
	}
	s.update(time.Minute, &log, contract.UpdateReserveBatch, contract.ReserveBatch{Requests: []contract.ReserveRequest{
		r(hold("c1", 0, policy.BudgetRun)),
		r(hold("c2", 0, policy.BudgetRun)),
		r(hold("c1", 0, policy.BudgetRun)), // the same Job again: held
		r(contract.BudgetHold{AgentID: "other", WorkflowID: "cycle/other/c1", Kind: policy.BudgetRun}),
		r(hold("c3", 0, policy.BudgetRun)),
		r(hold("c4", 0, policy.BudgetRun)),
		{BudgetHold: hold("c5", 1, policy.BudgetRun), Until: until, Compensation: true},
	}})
	s.update(2*time.Minute, &log, contract.UpdateReserveBatch, contract.ReserveBatch{})
	var st contract.AgentState
	s.stateAt(t, 3*time.Minute, &st)
	s.run(contract.AgentInput{Seed: budgetSeed(policy.Budgets{RunningJobs: 3})}, time.Hour)

	require.Len(t, log.rejected, 1)
	assert.Contains(t, log.rejected[0], "a reserve batch carries 1 to 200 requests, not 0")
	require.Len(t, log.completed, 1)
	got := log.completed[0].(contract.ReserveBatchResult).Results
	require.Len(t, got, 7)
	assert.Nil(t, got[0].Refused)
	assert.Equal(t, policy.BudgetUse{RunningJobs: 1, ActionsLastHour: 1}, got[0].Use)
	assert.Equal(t, policy.BudgetUse{RunningJobs: 2, ActionsLastHour: 2}, got[1].Use)
	assert.True(t, got[2].Held, "a request for a held Job is granted as held")
	assert.Contains(t, got[3].Invalid, "cycle/other/c1 is not a cycle of agent adv")
	assert.Nil(t, got[4].Refused, "the third Job fits")
	require.NotNil(t, got[5].Refused, "the fourth does not")
	assert.Equal(t, policy.BudgetError{Budget: policy.BudgetRunningJobs, AgentID: "adv", Used: 3, Limit: 3}, *got[5].Refused)
	assert.Nil(t, got[6].Refused, "a compensation is counted, never refused")
	assert.Equal(t, map[policy.BudgetKind]int{policy.BudgetRun: 4}, st.Budget.Held)
}
