package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/workflows"
)

// mockAgent answers the cycle's agent-state read with s.agent (default:
// active, the catalog's phases) and records its reports in s.reports.
func (s *cycleSuite) mockAgent() {
	s.agent = activities.AgentStateOutput{Status: contract.AgentActive}
	s.acts.AgentStates = agentStates(func(activities.AgentStateInput) activities.AgentStateOutput { return s.agent })
	s.env.OnActivity(s.acts.ReportCycle, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r contract.CycleReport) (contract.ReportCycleResult, error) {
			s.reports = append(s.reports, r)
			return contract.ReportCycleResult{Counted: true}, nil
		})
}

// agentStates is an activities.AgentStateReader.
type agentStates func(activities.AgentStateInput) activities.AgentStateOutput

func (f agentStates) AgentState(_ context.Context, in activities.AgentStateInput) (activities.AgentStateOutput, error) {
	return f(in), nil
}

// agentSuite runs the Agent workflow of agent "adv" (approvers U1, U2, U3).
type agentSuite struct {
	testsuite.WorkflowTestSuite
	env   *testsuite.TestWorkflowEnvironment
	acts  *activities.Activities
	kills []activities.KillAgentInput
	// alerted are the alerts the agent sent its approvers.
	alerted []contract.AgentAlert
}

var advSeed = contract.AgentSeed{
	AgentID: "adv", Namespace: "agents-adv", Approvers: []string{"U1", "U2", "U3"},
	Phases: map[policy.Class]policy.Phase{policy.ClassRead: policy.PhaseAutonomous, policy.ClassWrite: policy.PhaseSupervised},
}

func newAgentEnv(t *testing.T) *agentSuite {
	t.Helper()
	cat, err := policy.Parse("test.yaml", []byte(catalogYAML))
	require.NoError(t, err)
	s := &agentSuite{acts: &activities.Activities{Catalog: cat}}
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterWorkflowWithOptions(workflows.Agent, workflow.RegisterOptions{Name: contract.AgentWorkflowName})
	s.env.RegisterActivity(s.acts)
	s.env.RegisterActivityWithOptions(func(_ context.Context, a contract.AgentAlert) error {
		s.alerted = append(s.alerted, a)
		return nil
	}, activity.RegisterOptions{Name: contract.ActivityPostAgentAlert})
	s.env.OnActivity(s.acts.KillAgent, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.KillAgentInput) (contract.KillReport, error) {
			s.kills = append(s.kills, in)
			return contract.KillReport{CyclesCanceled: []string{"cycle/adv/c1"}, JobsDeleted: []string{"job-1"}, RevokedAccessors: []string{"acc-1"}, Passes: 2}, nil
		})
	s.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: contract.AgentWorkflowID("adv")})
	s.env.SetTestTimeout(10 * time.Second)
	return s
}

// updateLog collects what the updates answered.
type updateLog struct {
	rejected  []string
	completed []any
	failed    []string
}

func (s *agentSuite) update(at time.Duration, log *updateLog, name string, arg any) {
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { log.rejected = append(log.rejected, err.Error()) },
			OnComplete: func(v any, err error) {
				if err != nil {
					log.failed = append(log.failed, err.Error())
					return
				}
				log.completed = append(log.completed, v)
			},
		}, arg)
	}, at)
}

// stateAt queries the state at a moment (workflow time) into *st.
func (s *agentSuite) stateAt(t *testing.T, at time.Duration, st *contract.AgentState) {
	s.env.RegisterDelayedCallback(func() {
		v, err := s.env.QueryWorkflow(contract.QueryAgentState)
		require.NoError(t, err)
		require.NoError(t, v.Get(st))
	}, at)
}

// run starts the agent and stops the test (cancels the workflow) at end.
func (s *agentSuite) run(in contract.AgentInput, end time.Duration) {
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, end)
	s.env.ExecuteWorkflow(contract.AgentWorkflowName, in)
}

func TestAgentIsSeededFromTheCatalog(t *testing.T) {
	for name, in := range map[string]contract.AgentInput{
		"seed in the input":          {Seed: &advSeed},
		"no seed: read from catalog": {},
	} {
		t.Run(name, func(t *testing.T) {
			s := newAgentEnv(t)
			var st contract.AgentState
			s.stateAt(t, time.Minute, &st)
			s.run(in, time.Hour)
			assert.Equal(t, contract.AgentActive, st.Status)
			want := map[policy.Class]policy.Phase{policy.ClassRead: policy.PhaseAutonomous, policy.ClassWrite: policy.PhaseAdvisory}
			if in.Seed != nil {
				want = advSeed.Phases
			}
			assert.Equal(t, want, st.Phases)
			assert.Equal(t, want, st.Caps, "the catalog's phases are the caps")
			assert.Equal(t, []string{"U1", "U2", "U3"}, st.Approvers)
			require.Len(t, st.Transitions, 1)
			assert.Equal(t, contract.TransitionSeeded, st.Transitions[0].Kind)
		})
	}
}

func TestAgentPhasesNeverAboveTheCatalogCaps(t *testing.T) {
	s := newAgentEnv(t)
	seed := advSeed
	// A seed above its own caps cannot happen; a catalog that lowers a cap
	// brings the phase down with it.
	lower := advSeed
	lower.Phases = map[policy.Class]policy.Phase{policy.ClassRead: policy.PhaseAutonomous, policy.ClassWrite: policy.PhaseAdvisory}
	lower.Approvers = []string{"U9"}
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.SignalAgentCatalog, lower) }, time.Minute)
	var st contract.AgentState
	s.stateAt(t, 2*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &seed}, time.Hour)
	assert.Equal(t, policy.PhaseAdvisory, st.Phases[policy.ClassWrite])
	assert.Equal(t, lower.Phases, st.Caps)
	assert.Equal(t, []string{"U9"}, st.Approvers, "the catalog's approvers now decide kills and resumes")
	require.Len(t, st.Transitions, 2)
	assert.Equal(t, contract.TransitionCatalog, st.Transitions[1].Kind)
}

func TestAgentKill(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	s.update(time.Minute, &log, contract.UpdateKill, contract.KillRequest{Reason: "", By: "U1"})
	s.update(2*time.Minute, &log, contract.UpdateKill, contract.KillRequest{Reason: "rogue", By: "U7"})
	s.update(3*time.Minute, &log, contract.UpdateKill, contract.KillRequest{Reason: "deleting prod tables", By: "U2", Via: "cli"})
	var st contract.AgentState
	s.stateAt(t, 4*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)

	require.Len(t, log.rejected, 2)
	assert.Contains(t, log.rejected[0], "a reason is required")
	assert.Contains(t, log.rejected[1], "U7 is not an approver of agent adv")
	require.Len(t, log.completed, 1)
	rep := log.completed[0].(contract.KillReport)
	assert.Equal(t, []string{"acc-1"}, rep.RevokedAccessors)
	require.Len(t, s.kills, 1, "the kill activity ran once, for the agent's namespace")
	assert.Equal(t, activities.KillAgentInput{AgentID: "adv", Namespace: "agents-adv"}, s.kills[0])

	assert.Equal(t, contract.AgentKilled, st.Status)
	assert.Equal(t, "deleting prod tables (via cli)", st.Why)
	require.NotNil(t, st.LastKill)
	last := st.Transitions[len(st.Transitions)-1]
	assert.Equal(t, contract.TransitionKilled, last.Kind)
	assert.Equal(t, contract.AgentActive, last.From)
	assert.Equal(t, []string{"U2"}, last.By)
}

func TestAgentResumeNeedsTwoDistinctApproversAndComesBackInShadow(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	s.update(time.Minute, &log, contract.UpdateResume, contract.ResumeRequest{By: []string{"U1", "U2"}}) // active: nothing to resume
	s.update(2*time.Minute, &log, contract.UpdateKill, contract.KillRequest{Reason: "test", By: "U1"})
	s.update(3*time.Minute, &log, contract.UpdateResume, contract.ResumeRequest{By: []string{"U1"}})
	s.update(4*time.Minute, &log, contract.UpdateResume, contract.ResumeRequest{By: []string{"U1", "U1"}})
	s.update(5*time.Minute, &log, contract.UpdateResume, contract.ResumeRequest{By: []string{"U1", "U8"}})
	var killed contract.AgentState
	s.stateAt(t, 5*time.Minute+time.Second, &killed)
	s.update(6*time.Minute, &log, contract.UpdateResume, contract.ResumeRequest{By: []string{"U2", "U3"}, Reason: "fixed", Via: "cli"})
	var st contract.AgentState
	s.stateAt(t, 7*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)

	require.Len(t, log.rejected, 4, "%v", log.rejected)
	assert.Contains(t, log.rejected[0], "agent adv is active: nothing to resume")
	assert.Contains(t, log.rejected[1], "needs 2 distinct approvers, got 1 (U1)")
	assert.Contains(t, log.rejected[2], "needs 2 distinct approvers, got 1 (U1)")
	assert.Contains(t, log.rejected[3], "U8 is not an approver of agent adv")
	assert.Equal(t, contract.AgentKilled, killed.Status, "refused resumes change nothing")

	assert.Equal(t, contract.AgentActive, st.Status)
	assert.Equal(t, map[policy.Class]policy.Phase{policy.ClassRead: policy.PhaseShadow, policy.ClassWrite: policy.PhaseShadow}, st.Phases)
	last := st.Transitions[len(st.Transitions)-1]
	assert.Equal(t, contract.TransitionResumed, last.Kind)
	assert.Equal(t, contract.AgentKilled, last.From)
	assert.Equal(t, []string{"U2", "U3"}, last.By)
	assert.Equal(t, "fixed (via cli)", last.Why)
}

func TestAgentCountsEachCycleReportOnce(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	r := contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "succeeded", Actions: map[string]int{"succeeded": 2}, Approvals: 1}
	s.update(time.Minute, &log, contract.UpdateReportCycle, r)
	s.update(2*time.Minute, &log, contract.UpdateReportCycle, r) // a retried report
	s.update(3*time.Minute, &log, contract.UpdateReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c2", AgentID: "adv", Outcome: "refused", Violation: true})
	s.update(4*time.Minute, &log, contract.UpdateReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c3", AgentID: "adv", Outcome: "refused", Unverified: true})
	s.update(5*time.Minute, &log, contract.UpdateReportCycle, contract.CycleReport{WorkflowID: "cycle/other/c1", AgentID: "other", Outcome: "succeeded"})
	var st contract.AgentState
	s.stateAt(t, 6*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)

	require.Len(t, log.rejected, 1)
	assert.Contains(t, log.rejected[0], "cycle/other/c1 is not a cycle of agent adv")
	require.Len(t, log.completed, 4)
	assert.Equal(t, contract.ReportCycleResult{Duplicate: true}, log.completed[1])
	assert.Equal(t, 3, st.Counters.Cycles)
	assert.Equal(t, map[string]int{"succeeded": 1, "refused": 2}, st.Counters.Outcomes)
	assert.Equal(t, map[string]int{"succeeded": 2}, st.Counters.Actions)
	assert.Equal(t, 1, st.Counters.Approvals)
	assert.Equal(t, 1, st.Counters.Violations)
	assert.Equal(t, 1, st.Counters.Unverified)
	assert.Empty(t, st.RecentCycles, "the query leaves the idempotency set out")
}

// Cycles report by signal (nobody waits on the agent's workflow task): each
// cycle is counted once, a report of another agent's cycle is dropped, and
// the report gives back what the cycle still held.
func TestAgentCountsEachSignalledReportOnce(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	s.update(30*time.Second, &log, contract.UpdateReserve, contract.ReserveRequest{
		BudgetHold: contract.BudgetHold{AgentID: "adv", WorkflowID: "cycle/adv/c1", Kind: policy.BudgetApproval}})
	r := contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "denied", Actions: map[string]int{"denied": 1},
		Refusals: map[string]int{policy.BudgetRunningJobs: 1}}
	for i, rep := range []contract.CycleReport{r, r, {WorkflowID: "cycle/other/c1", AgentID: "other", Outcome: "succeeded"}} {
		s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.SignalReportCycle, rep) }, time.Duration(i+1)*time.Minute)
	}
	var st contract.AgentState
	s.stateAt(t, 5*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)
	assert.Equal(t, 1, st.Counters.Cycles)
	assert.Equal(t, map[string]int{"denied": 1}, st.Counters.Outcomes)
	assert.Equal(t, map[string]int{policy.BudgetRunningJobs: 1}, st.Counters.BudgetRefusals)
	assert.Empty(t, st.Budget.Held, "the report released the cycle's approval hold")
}

// Reports a worker batched (cycles of one agent ending at once) count as
// if each had come alone: each cycle once, another agent's dropped, and
// each releases its cycle's holds.
func TestAgentCountsBatchedReportsOnceEach(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	for _, c := range []string{"c1", "c2"} {
		s.update(30*time.Second, &log, contract.UpdateReserve, contract.ReserveRequest{
			BudgetHold: contract.BudgetHold{AgentID: "adv", WorkflowID: "cycle/adv/" + c, Kind: policy.BudgetRun}})
	}
	ok := contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "succeeded", Actions: map[string]int{"succeeded": 1}}
	failed := contract.CycleReport{WorkflowID: "cycle/adv/c2", AgentID: "adv", Outcome: "failed", Actions: map[string]int{"failed": 1}}
	other := contract.CycleReport{WorkflowID: "cycle/other/c1", AgentID: "other", Outcome: "succeeded"}
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.SignalReportCycles, contract.CycleReports{Reports: []contract.CycleReport{ok, failed, other}})
	}, time.Minute)
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.SignalReportCycle, ok) }, 2*time.Minute)
	var st contract.AgentState
	s.stateAt(t, 3*time.Minute, &st)
	s.run(contract.AgentInput{Seed: &advSeed}, time.Hour)
	assert.Equal(t, 2, st.Counters.Cycles)
	assert.Equal(t, map[string]int{"succeeded": 1, "failed": 1}, st.Counters.Outcomes)
	assert.Empty(t, st.Budget.Held, "each report released its cycle's hold")
}

func TestAgentContinuesAsNewKeepingItsState(t *testing.T) {
	s := newAgentEnv(t)
	var log updateLog
	s.update(time.Minute, &log, contract.UpdateKill, contract.KillRequest{Reason: "test", By: "U1"})
	s.update(2*time.Minute, &log, contract.UpdateReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "canceled"})
	s.env.ExecuteWorkflow(contract.AgentWorkflowName, contract.AgentInput{Seed: &advSeed, Limits: contract.AgentLimits{MaxUpdates: 2}})
	require.True(t, s.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, s.env.GetWorkflowError(), &can)
	var next contract.AgentInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.State)
	assert.Equal(t, contract.AgentKilled, next.State.Status)
	assert.Equal(t, 1, next.State.Counters.Cycles)
	assert.Equal(t, []string{"cycle/adv/c1"}, next.State.RecentCycles)
	assert.Equal(t, 1, next.State.Runs)
	assert.Equal(t, 2, next.Limits.MaxUpdates)

	// The next run holds the same state, and still knows the reported cycle.
	s2 := newAgentEnv(t)
	var log2 updateLog
	s2.update(time.Minute, &log2, contract.UpdateReportCycle, contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "canceled"})
	var st contract.AgentState
	s2.stateAt(t, 2*time.Minute, &st)
	s2.run(contract.AgentInput{State: next.State}, time.Hour)
	require.Len(t, log2.completed, 1)
	assert.Equal(t, contract.ReportCycleResult{Duplicate: true}, log2.completed[0])
	assert.Equal(t, contract.AgentKilled, st.Status)
	assert.Equal(t, 1, st.Counters.Cycles)
	assert.Empty(t, s2.kills, "a new run does not kill again")
}

func TestCycleOfAKilledAgentIsRefusedBeforeAnythingRuns(t *testing.T) {
	for _, status := range []contract.AgentStatus{contract.AgentKilled, contract.AgentSuspended} {
		t.Run(string(status), func(t *testing.T) {
			s := newEnv(t)
			s.agent = activities.AgentStateOutput{Status: status, Why: "rogue writes (via cli)"}
			s.execute(request("auto", inspect, scale))
			require.True(t, s.env.IsWorkflowCompleted())
			err := s.env.GetWorkflowError()
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			assert.Equal(t, contract.ErrTypeInvalidRequest, appErr.Type())
			assert.Equal(t, "agent auto is "+string(status)+": rogue writes (via cli)", appErr.Message())
			s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
			require.Len(t, s.reports, 1)
			r := s.reports[0]
			assert.Equal(t, "refused", r.Outcome)
			assert.False(t, r.Violation, "a killed agent's cycle is not a policy violation")
			assert.False(t, r.Unverified)
		})
	}
}

func TestCyclePlansWithTheAgentsPhasesCappedByTheCatalog(t *testing.T) {
	for name, tc := range map[string]struct {
		agent string
		live  policy.Phase
		want  policy.Phase
		mode  policy.Mode
	}{
		"lower than the catalog: advisory wins":       {"auto", policy.PhaseAdvisory, policy.PhaseAdvisory, policy.ModeApprove},
		"above the catalog's cap: capped to advisory": {"adv", policy.PhaseAutonomous, policy.PhaseAdvisory, policy.ModeApprove},
	} {
		t.Run(name, func(t *testing.T) {
			s := newEnv(t)
			s.mockRunOK()
			s.agent = activities.AgentStateOutput{Status: contract.AgentActive,
				Phases: map[policy.Class]policy.Phase{policy.ClassRead: policy.PhaseAutonomous, policy.ClassWrite: tc.live}}
			s.execute(request(tc.agent, scale))
			require.True(t, s.env.IsWorkflowCompleted())
			require.NoError(t, s.env.GetWorkflowError())
			var res contract.CycleResult
			require.NoError(t, s.env.GetWorkflowResult(&res))
			require.Len(t, res.Actions, 1)
			assert.Equal(t, tc.want, res.Actions[0].Decision.Phase)
			assert.Equal(t, tc.mode, res.Actions[0].Decision.Mode)
			assert.Equal(t, contract.OutcomeDenied, res.Outcome, "nobody approved: a timeout is a denial")
			require.Len(t, s.reports, 1)
			assert.Equal(t, []contract.ActionReport{{Type: "scale", Class: policy.ClassWrite, Phase: tc.want, Mode: tc.mode,
				Outcome: contract.OutcomeDenied, Expired: true}}, s.reports[0].Details, "nobody decided: expired, not a human denial")
			s.reports[0].Details = nil
			assert.Equal(t, contract.CycleReport{WorkflowID: "cycle/" + tc.agent + "/c1", AgentID: tc.agent, Outcome: "denied",
				Actions: map[string]int{"denied": 1}, Denials: 1}, s.reports[0])
		})
	}
}

func TestCycleReportsItsOutcomeToTheAgent(t *testing.T) {
	t.Run("succeeded, after an approval", func(t *testing.T) {
		s := newEnv(t)
		s.mockRunOK()
		var log decisionLog
		s.decideAt(time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: hashOf(t, s, "adv", scale), Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})
		s.execute(request("adv", scale))
		require.NoError(t, s.env.GetWorkflowError())
		require.Len(t, s.reports, 1)
		require.Len(t, s.reports[0].Details, 1)
		d := s.reports[0].Details[0]
		assert.Equal(t, contract.ActionReport{Type: "scale", Class: policy.ClassWrite, Phase: d.Phase, Mode: policy.ModeApprove,
			Outcome: contract.OutcomeSucceeded, Approved: true, Ran: true}, d)
		s.reports[0].Details = nil
		assert.Equal(t, contract.CycleReport{WorkflowID: "cycle/adv/c1", AgentID: "adv", Outcome: "succeeded",
			Actions: map[string]int{"succeeded": 1}, Approvals: 1}, s.reports[0])
	})
	t.Run("unverified", func(t *testing.T) {
		s := newEnv(t)
		req := request("auto", inspect)
		req.Signature = &contract.RequestSignature{SignedAt: s.env.Now().UTC().Format(time.RFC3339), Signature: "vault:v1:forged"}
		s.execute(req)
		require.Error(t, s.env.GetWorkflowError())
		require.Len(t, s.reports, 1)
		assert.True(t, s.reports[0].Unverified)
		assert.False(t, s.reports[0].Violation)
		s.env.AssertNotCalled(t, "PlanCycle", mock.Anything, mock.Anything)
	})
	t.Run("policy violation", func(t *testing.T) {
		s := newEnv(t)
		s.execute(request("sup", policy.Proposal{Type: "drop"})) // not one of sup's actions
		require.Error(t, s.env.GetWorkflowError())
		require.Len(t, s.reports, 1)
		assert.True(t, s.reports[0].Violation)
		assert.Equal(t, "refused", s.reports[0].Outcome)
	})
}

func TestAutonomousWriteIsAnnouncedAfterItRan(t *testing.T) {
	s := newEnv(t)
	var posted []contract.Notice
	var staged bool
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.StageInput) (activities.StageOutput, error) {
			staged = true
			return stageOK(ctx, in)
		})
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true}, nil)
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
	s.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(
		func(_ context.Context, n contract.Notice) (contract.MessageRef, error) {
			assert.True(t, staged, "posted after the write ran")
			posted = append(posted, n)
			return contract.MessageRef{Channel: "C1", TS: "1.1"}, nil
		})
	s.execute(request("auto", inspect, scale))
	require.NoError(t, s.env.GetWorkflowError())
	require.Len(t, posted, 1, "the write is announced, the read is not")
	assert.Equal(t, contract.NoticeDone, posted[0].Mode)
	assert.Equal(t, "scale", posted[0].Pending.Action.Type)
}
