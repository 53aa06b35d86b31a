package workflows_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/workflows"
)

// decisionLog collects what the Update answered.
type decisionLog struct {
	rejected  []string
	completed []contract.DecisionResult
}

// decideAt sends a decision Update after delay (workflow time).
func (s *cycleSuite) decideAt(delay time.Duration, log *decisionLog, d contract.Decision) {
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(contract.UpdateDecide, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { log.rejected = append(log.rejected, err.Error()) },
			OnComplete: func(v any, err error) {
				if err == nil {
					log.completed = append(log.completed, v.(contract.DecisionResult))
				}
			},
		}, d)
	}, delay)
}

// mockRunOK makes every action that runs succeed, and counts nothing else.
func (s *cycleSuite) mockRunOK() {
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(stageOK)
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true}, nil)
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
	s.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(contract.MessageRef{Channel: "C1", TS: "1.1"}, nil)
	s.env.OnActivity(contract.ActivityUpdateApproval, mock.Anything, mock.Anything).Return(nil)
}

func hashOf(t *testing.T, s *cycleSuite, agent string, p policy.Proposal) string {
	t.Helper()
	plan, err := s.acts.Catalog.Plan(agent, []policy.Proposal{p})
	require.NoError(t, err)
	return plan.Actions[0].Hash
}

func runCycle(t *testing.T, s *cycleSuite, req contract.CycleRequest) contract.CycleResult {
	t.Helper()
	s.execute(req)
	require.True(t, s.env.IsWorkflowCompleted())
	require.NoError(t, s.env.GetWorkflowError())
	var res contract.CycleResult
	require.NoError(t, s.env.GetWorkflowResult(&res))
	return res
}

func TestAdvisoryWriteRunsOnlyAfterApproval(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	var log decisionLog
	h := hashOf(t, s, "adv", scale)
	var pending []contract.PendingAction
	s.env.RegisterDelayedCallback(func() {
		v, err := s.env.QueryWorkflow(contract.QueryPending)
		require.NoError(t, err)
		require.NoError(t, v.Get(&pending))
		s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	}, time.Minute)
	s.decideAt(2*time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})

	res := runCycle(t, s, request("adv", scale))
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	require.Len(t, pending, 1, "the write waited, visible to the pending query")
	assert.Equal(t, h, pending[0].Action.Hash)
	assert.Equal(t, 1, pending[0].Needed)
	require.Len(t, res.Actions[0].Decisions, 1)
	assert.Equal(t, "U1", res.Actions[0].Decisions[0].Approver, "the approver is recorded")
	assert.False(t, res.Actions[0].Decisions[0].At.IsZero(), "with the time")
	assert.Equal(t, "approved", log.completed[0].Status)
	s.env.AssertNumberOfCalls(t, "RunJob", 1)
}

func TestAdvisoryTimeoutIsADenialAndNothingIsLeased(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	res := runCycle(t, s, request("adv", scale, inspect))
	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	assert.Equal(t, contract.OutcomeDenied, res.Actions[0].Outcome)
	assert.Contains(t, res.Actions[0].Error, "no decision within 10m0s: a timeout is a denial")
	assert.Equal(t, contract.OutcomeSkipped, res.Actions[1].Outcome)
	s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	s.env.AssertNotCalled(t, "ReleaseAction", mock.Anything, mock.Anything)
}

func TestDenialEndsTheActionAndLeasesNothing(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	var log decisionLog
	h := hashOf(t, s, "adv", scale)
	s.decideAt(time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionDeny, Approver: "U2", Via: "slack"})
	res := runCycle(t, s, request("adv", scale))
	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	assert.Equal(t, "denied by U2", res.Actions[0].Error)
	s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
}

func TestValidatorRefusesBadDecisionsWithoutTouchingTheAction(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	var log decisionLog
	h := hashOf(t, s, "adv", scale)
	d := func(approver, hash string, kind contract.DecisionKind, index int) contract.Decision {
		return contract.Decision{ActionIndex: index, ActionHash: hash, Kind: kind, Approver: approver, Via: "slack"}
	}
	s.decideAt(1*time.Minute, &log, d("U9", h, contract.DecisionApprove, 0))          // not an approver
	s.decideAt(2*time.Minute, &log, d("U3", h, contract.DecisionApprove, 0))          // requested the cycle
	s.decideAt(3*time.Minute, &log, d("U1", "deadbeef", contract.DecisionApprove, 0)) // stale hash
	s.decideAt(4*time.Minute, &log, d("U1", h, contract.DecisionAgree, 0))            // wrong kind
	s.decideAt(5*time.Minute, &log, d("U1", h, contract.DecisionApprove, 7))          // no such action
	s.decideAt(6*time.Minute, &log, d("U1", h, contract.DecisionApprove, 0))          // valid
	s.decideAt(7*time.Minute, &log, d("U1", h, contract.DecisionApprove, 0))          // double click
	s.decideAt(8*time.Minute, &log, d("U2", h, contract.DecisionDeny, 0))             // too late

	// A second action keeps the cycle open (waiting) for the late clicks.
	req := request("adv", scale, policy.Proposal{Type: "scale", Params: map[string]any{"replicas": 4}})
	req.Principal = "U3"
	res := runCycle(t, s, req)

	require.Len(t, log.rejected, 6, "%v", log.rejected)
	assert.Contains(t, log.rejected[0], "U9 is not an approver of agent adv")
	assert.Contains(t, log.rejected[1], "U3 requested this cycle and cannot decide on it")
	assert.Contains(t, log.rejected[2], "stale decision")
	assert.Contains(t, log.rejected[3], `"agree" is not a valid decision`)
	assert.Contains(t, log.rejected[4], "action 7 is not waiting for a decision")
	assert.Contains(t, log.rejected[5], "action 0 is already closed")
	require.Len(t, log.completed, 2)
	assert.Equal(t, "approved", log.completed[0].Status)
	assert.Equal(t, "already decided", log.completed[1].Status, "a second click is harmless")
	assert.Equal(t, contract.OutcomeSucceeded, res.Actions[0].Outcome)
	assert.Equal(t, contract.OutcomeDenied, res.Actions[1].Outcome, "nobody approved the second one")
	assert.Len(t, res.Actions[0].Decisions, 1, "only the valid decision is recorded")
	s.env.AssertNumberOfCalls(t, "RunJob", 1)
}

func TestCriticalNeedsTwoDistinctApprovers(t *testing.T) {
	drop := policy.Proposal{Type: "drop"}
	t.Run("one approver clicking twice is not two", func(t *testing.T) {
		s := newEnv(t)
		s.mockRunOK()
		var log decisionLog
		h := hashOf(t, s, "adv", drop)
		approve := contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionApprove, Approver: "U1", Via: "slack"}
		s.decideAt(time.Minute, &log, approve)
		s.decideAt(2*time.Minute, &log, approve)
		res := runCycle(t, s, request("adv", drop))
		assert.Equal(t, contract.OutcomeDenied, res.Outcome, "even in advisory/autonomous, one approver is not enough")
		assert.Equal(t, "waiting", log.completed[0].Status)
		assert.Equal(t, "already decided", log.completed[1].Status)
		s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	})
	t.Run("two distinct approvers run it", func(t *testing.T) {
		s := newEnv(t)
		s.mockRunOK()
		var log decisionLog
		h := hashOf(t, s, "adv", drop)
		s.decideAt(time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionApprove, Approver: "U1", Via: "slack"})
		s.decideAt(2*time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionApprove, Approver: "U2", Via: "cli"})
		res := runCycle(t, s, request("adv", drop))
		assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
		assert.Equal(t, []string{"U1", "U2"}, log.completed[1].ApprovedBy)
		assert.Equal(t, "approved", log.completed[1].Status)
		s.env.AssertNumberOfCalls(t, "RunJob", 1)
	})
}

func TestCriticalInAutonomousPhaseStillWaits(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	res := runCycle(t, s, request("auto", policy.Proposal{Type: "drop"}))
	assert.Equal(t, contract.OutcomeDenied, res.Outcome)
	assert.Equal(t, 2, res.Actions[0].Decision.Approvals)
	s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
}

func TestSupervisedVeto(t *testing.T) {
	inBounds := policy.Proposal{Type: "scale2", Params: map[string]any{"replicas": 5}}
	outOfBounds := policy.Proposal{Type: "scale2", Params: map[string]any{"replicas": 50}}

	t.Run("inside bounds runs after the window", func(t *testing.T) {
		s := newEnv(t)
		var started time.Time
		s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true}, nil)
		s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
		s.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(contract.MessageRef{}, nil)
		s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(
			func(ctx context.Context, in activities.StageInput) (activities.StageOutput, error) {
				started = s.env.Now()
				return stageOK(ctx, in)
			})
		begin := s.env.Now()
		res := runCycle(t, s, request("sup", inBounds))
		assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
		assert.GreaterOrEqual(t, started.Sub(begin), 2*time.Minute, "ran only after the 2m veto window")
	})
	t.Run("stop during the window vetoes it", func(t *testing.T) {
		s := newEnv(t)
		s.mockRunOK()
		var log decisionLog
		h := hashOf(t, s, "sup", inBounds)
		s.decideAt(30*time.Second, &log, contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionStop, Approver: "U2", Via: "slack"})
		res := runCycle(t, s, request("sup", inBounds))
		assert.Equal(t, contract.OutcomeDenied, res.Outcome)
		assert.Equal(t, "stopped by U2 during the veto window", res.Actions[0].Error)
		s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	})
	t.Run("outside bounds waits for approval like advisory", func(t *testing.T) {
		s := newEnv(t)
		s.mockRunOK()
		res := runCycle(t, s, request("sup", outOfBounds))
		assert.Equal(t, contract.OutcomeDenied, res.Outcome)
		assert.Equal(t, policy.ModeApprove, res.Actions[0].Decision.Mode)
		assert.Contains(t, res.Actions[0].Decision.Rule, "params.replicas outside bounds")
		assert.Contains(t, res.Actions[0].Error, "a timeout is a denial")
	})
}

func TestShadowRecordsTheDryRunAndNeverLeases(t *testing.T) {
	s := newEnv(t)
	s.env.OnActivity(s.acts.DryRunAction, mock.Anything, mock.Anything).Return(activities.DryRunOutput{Admitted: false, Reason: "pod refused: exceeded quota"}, nil)
	var posted []contract.Notice
	s.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(
		func(_ context.Context, n contract.Notice) (contract.MessageRef, error) {
			posted = append(posted, n)
			return contract.MessageRef{Channel: "C1", TS: "1.1"}, nil
		})
	start := s.env.Now()
	res := runCycle(t, s, request("shadowy", scale))
	assert.Equal(t, contract.OutcomeWouldDo, res.Actions[0].Outcome)
	assert.Equal(t, "rejected: pod refused: exceeded quota", res.Actions[0].DryRun)
	s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	s.env.AssertNotCalled(t, "RunJob", mock.Anything, mock.Anything)

	// The cycle ends at once: its "would do" message is posted from the
	// cycle, and the proposal goes to the agent's workflow, where feedback
	// lands (no workflow per proposal).
	assert.Empty(t, res.Actions[0].FeedbackWorkflowID)
	require.Len(t, posted, 1)
	assert.Equal(t, contract.NoticeShadow, posted[0].Mode)
	assert.Equal(t, res.WorkflowID, posted[0].Pending.WorkflowID)
	require.Len(t, s.reports, 1)
	require.Len(t, s.reports[0].Shadow, 1)
	p := s.reports[0].Shadow[0]
	assert.Equal(t, contract.ShadowProposal{WorkflowID: res.WorkflowID, Index: 0, Type: "scale", Class: policy.ClassWrite,
		Hash: res.Actions[0].Hash, Selves: []string{"agent:shadowy"}, Until: p.Until}, p)
	assert.WithinDuration(t, start.Add(15*time.Minute), p.Until, time.Second, "open for the catalog's approval timeout (15m)")
	assert.Equal(t, posted[0].Pending.Deadline, p.Until)
}

func TestShadowFeedbackIsRecordedAndNeverRunsAnything(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.ShadowFeedback, workflow.RegisterOptions{Name: contract.FeedbackWorkflowName})
	var posted []contract.Notice
	env.RegisterActivityWithOptions(func(_ context.Context, n contract.Notice) (contract.MessageRef, error) {
		posted = append(posted, n)
		return contract.MessageRef{Channel: "C", TS: "1"}, nil
	}, activity.RegisterOptions{Name: contract.ActivityPostApproval})
	var settled []contract.NoticeUpdate
	env.RegisterActivityWithOptions(func(_ context.Context, u contract.NoticeUpdate) error {
		settled = append(settled, u)
		return nil
	}, activity.RegisterOptions{Name: contract.ActivityUpdateApproval})

	act := policy.RenderedAction{Index: 1, Type: "scale", Hash: "h1"}
	var log decisionLog
	send := func(delay time.Duration, approver string, kind contract.DecisionKind) {
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(contract.UpdateDecide, "", &testsuite.TestUpdateCallback{
				OnAccept: func() {},
				OnReject: func(err error) { log.rejected = append(log.rejected, err.Error()) },
				OnComplete: func(v any, err error) {
					if err == nil {
						log.completed = append(log.completed, v.(contract.DecisionResult))
					}
				},
			}, contract.Decision{ActionIndex: 1, ActionHash: "h1", Kind: kind, Approver: approver, Via: "slack"})
		}, delay)
	}
	send(time.Minute, "U1", contract.DecisionAgree)
	send(2*time.Minute, "U1", contract.DecisionDisagree)   // second answer: already decided
	send(3*time.Minute, "U3", contract.DecisionApprove)    // feedback can never approve
	send(4*time.Minute, "agent:x", contract.DecisionAgree) // the requester
	send(5*time.Minute, "U2", contract.DecisionDisagree)

	env.ExecuteWorkflow(contract.FeedbackWorkflowName, contract.FeedbackRequest{
		CycleWorkflowID: "cycle/a/c", AgentID: "a", Principal: "agent:x", Approvers: []string{"U1", "U2", "U3"},
		Action: act, Window: time.Hour,
	})
	require.NoError(t, env.GetWorkflowError())
	var res contract.FeedbackResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Len(t, res.Decisions, 2)
	assert.Equal(t, contract.DecisionAgree, res.Decisions[0].Kind)
	assert.Equal(t, "U2", res.Decisions[1].Approver)
	require.Len(t, log.rejected, 2)
	assert.Contains(t, log.rejected[0], `"approve" is not a valid decision`)
	assert.Contains(t, log.rejected[1], "agent:x requested this cycle and cannot decide on it")
	assert.Equal(t, "already decided", log.completed[1].Status)
	require.Len(t, posted, 1)
	assert.Equal(t, contract.NoticeShadow, posted[0].Mode)
	require.Len(t, settled, 1, "the message is updated once the window ends")
}

func TestApprovalReminderThenEscalationBeforeTheTimeout(t *testing.T) {
	const cat = `
actions:
  - name: scale
    image: busybox` + digest + `
    command: ["scale"]
    class: write
    risk: medium
    vault_policies: [rw]
agents:
  - id: slow
    owner: team
    approvers: [U1]
    namespace: agents-slow
    actions: [scale]
    phases: {read: autonomous, write: advisory}
    slack_channel: C-TEAM
    approval_timeout: 30m
    reminder_after: 10m
    escalate_after: 20m
    escalation_channel: C-ONCALL
`
	run := func(t *testing.T, approveAt time.Duration) ([]contract.Notice, []time.Duration, []contract.NoticeUpdate, contract.CycleResult) {
		c, err := policy.Parse("t.yaml", []byte(cat))
		require.NoError(t, err)
		s := &cycleSuite{acts: &activities.Activities{Catalog: c, Identity: fakeVerifier{}}}
		s.env = s.NewTestWorkflowEnvironment()
		s.env.RegisterWorkflowWithOptions(workflows.AgentCycle, workflow.RegisterOptions{Name: contract.CycleWorkflowName})
		s.env.RegisterActivity(s.acts)
		var posted []contract.Notice
		var at []time.Duration
		start := s.env.Now()
		s.env.RegisterActivityWithOptions(func(_ context.Context, n contract.Notice) (contract.MessageRef, error) {
			posted = append(posted, n)
			at = append(at, s.env.Now().Sub(start).Round(time.Minute))
			return contract.MessageRef{Channel: n.Channel, TS: fmt.Sprint(len(posted))}, nil
		}, activity.RegisterOptions{Name: contract.ActivityPostApproval})
		var settled []contract.NoticeUpdate
		s.env.RegisterActivityWithOptions(func(_ context.Context, u contract.NoticeUpdate) error {
			settled = append(settled, u)
			return nil
		}, activity.RegisterOptions{Name: contract.ActivityUpdateApproval})
		s.mockAgent()
		s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(stageOK)
		s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true}, nil)
		s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
		if approveAt > 0 {
			plan, err := c.Plan("slow", []policy.Proposal{{Type: "scale"}})
			require.NoError(t, err)
			var log decisionLog
			s.decideAt(approveAt, &log, contract.Decision{ActionIndex: 0, ActionHash: plan.Actions[0].Hash, Kind: contract.DecisionApprove, Approver: "U1", Via: "cli"})
		}
		res := runCycle(t, s, request("slow", policy.Proposal{Type: "scale"}))
		return posted, at, settled, res
	}

	t.Run("nobody answers: reminder, escalation, then denial", func(t *testing.T) {
		posted, at, settled, res := run(t, 0)
		require.Len(t, posted, 3)
		assert.Equal(t, []string{"C-TEAM", "C-TEAM", "C-ONCALL"}, []string{posted[0].Channel, posted[1].Channel, posted[2].Channel})
		assert.Equal(t, []time.Duration{0, 10 * time.Minute, 20 * time.Minute}, at)
		assert.Equal(t, contract.OutcomeDenied, res.Outcome)
		assert.Len(t, settled, 3, "every posted message shows the outcome")
	})
	t.Run("approved after the reminder: no escalation", func(t *testing.T) {
		posted, _, settled, res := run(t, 15*time.Minute)
		assert.Len(t, posted, 2)
		assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
		assert.Len(t, settled, 2)
	})
}
