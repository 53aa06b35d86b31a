package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/workflows"
)

const digest = "@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"

const catalogYAML = `
actions:
  - name: inspect
    image: busybox` + digest + `
    command: ["inspect", "{{.service}}"]
    params_schema: {type: object, required: [service], properties: {service: {type: string}}}
    class: read
    risk: low
    vault_policies: [ro]
    deadline: 1m
  - name: scale
    image: busybox` + digest + `
    command: ["scale", "{{.replicas}}"]
    params_schema: {type: object, required: [replicas], properties: {replicas: {type: integer}}}
    class: write
    risk: medium
    vault_policies: [rw]
    rollback: unscale
  - name: scale2
    image: busybox` + digest + `
    command: ["scale", "{{.replicas}}"]
    params_schema: {type: object, required: [replicas], properties: {replicas: {type: integer}}}
    class: write
    risk: medium
    vault_policies: [rw]
    bounds: {replicas: {max: 10}}
  - name: unscale
    image: busybox` + digest + `
    command: ["unscale"]
    params_schema: {type: object}
    class: write
    risk: medium
    vault_policies: [rw]
  - name: drop
    image: busybox` + digest + `
    command: ["drop"]
    class: write
    risk: critical
    vault_policies: [rw]
agents:
  - id: adv
    owner: team
    approvers: [U1, U2, U3]
    namespace: agents-adv
    actions: [inspect, scale, drop]
    phases: {read: autonomous, write: advisory}
    approval_timeout: 10m
  - id: sup
    owner: team
    approvers: [U1, U2]
    namespace: agents-sup
    actions: [inspect, scale2]
    phases: {read: autonomous, write: supervised}
    veto_window: 2m
  - id: auto
    owner: team
    namespace: agents-auto
    actions: [inspect, scale, drop]
    phases: {read: autonomous, write: autonomous}
  - id: shadowy
    owner: team
    namespace: agents-shadow
    actions: [inspect, scale]
    phases: {read: shadow, write: shadow}
`

type cycleSuite struct {
	testsuite.WorkflowTestSuite
	env  *testsuite.TestWorkflowEnvironment
	acts *activities.Activities
	// agent is what the (mocked) Agent workflow answers; reports are what
	// cycles reported to it (mockAgent).
	agent   activities.AgentStateOutput
	reports []contract.CycleReport
}

func newEnv(t *testing.T) *cycleSuite { return newEnvWith(t, nil) }

// newEnvWith registers AgentCycle with m as the SDK's metrics handler
// (nil: the SDK's default).
func newEnvWith(t *testing.T, m client.MetricsHandler) *cycleSuite {
	t.Helper()
	cat, err := policy.Parse("test.yaml", []byte(catalogYAML))
	require.NoError(t, err)
	s := &cycleSuite{acts: &activities.Activities{Catalog: cat, Identity: fakeVerifier{}}}
	if m != nil {
		s.SetMetricsHandler(m)
	}
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterWorkflowWithOptions(workflows.AgentCycle, workflow.RegisterOptions{Name: contract.CycleWorkflowName})
	s.env.RegisterWorkflowWithOptions(workflows.ShadowFeedback, workflow.RegisterOptions{Name: contract.FeedbackWorkflowName})
	s.env.RegisterActivity(s.acts)
	// The Slack activities are registered by name by the worker; here they
	// only need to exist so tests can mock them.
	s.env.RegisterActivityWithOptions(func(context.Context, contract.Notice) (contract.MessageRef, error) {
		return contract.MessageRef{}, nil
	}, activity.RegisterOptions{Name: contract.ActivityPostApproval})
	s.env.RegisterActivityWithOptions(func(context.Context, contract.NoticeUpdate) error { return nil },
		activity.RegisterOptions{Name: contract.ActivityUpdateApproval})
	s.mockAgent()
	s.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: contract.CycleWorkflowID("auto", "c1")})
	s.env.SetTestTimeout(20 * time.Second)
	return s
}

// execute runs a cycle as an agent would start it: as workflow
// cycle/<agent>/<cycle>, signed with the agent's (fake) key unless the
// request already carries a signature.
func (s *cycleSuite) execute(req contract.CycleRequest) {
	s.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: contract.CycleWorkflowID(req.AgentID, req.CycleID)})
	if req.Signature == nil {
		req = signAs(req.AgentID, req, s.env.Now())
	}
	s.env.ExecuteWorkflow(contract.CycleWorkflowName, req)
}

func stageOK(_ context.Context, in activities.StageInput) (activities.StageOutput, error) {
	return activities.StageOutput{Namespace: in.Namespace, JobName: "job", LeaseAccessor: "acc-" + in.Action.Type, LeaseTTL: 3 * time.Minute}, nil
}

func request(agent string, actions ...policy.Proposal) contract.CycleRequest {
	return contract.CycleRequest{
		AgentID: agent, CycleID: "c1",
		Thoughts: []contract.Thought{{Step: 1, Content: "look first", Confidence: 0.9}},
		Actions:  actions,
	}
}

var (
	inspect = policy.Proposal{Type: "inspect", Params: map[string]any{"service": "checkout"}}
	scale   = policy.Proposal{Type: "scale", Params: map[string]any{"replicas": 3}}
)

func TestAutonomousCycleRunsEveryActionAndReleasesEachLease(t *testing.T) {
	s := newEnv(t)
	var released []string
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(stageOK)
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true, Reason: "Completed", Output: "ok"}, nil)
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ReleaseInput) (activities.ReleaseOutput, error) {
			released = append(released, in.LeaseAccessor)
			assert.False(t, in.DeleteJob)
			return activities.ReleaseOutput{RevokedAccessor: in.LeaseAccessor}, nil
		})

	s.execute(request("auto", inspect, scale))
	require.True(t, s.env.IsWorkflowCompleted())
	require.NoError(t, s.env.GetWorkflowError())
	var res contract.CycleResult
	require.NoError(t, s.env.GetWorkflowResult(&res))

	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	require.Len(t, res.Actions, 2)
	for i, a := range res.Actions {
		assert.Equal(t, contract.OutcomeSucceeded, a.Outcome, "action %d", i)
		assert.Equal(t, "ok", a.Output)
		assert.Equal(t, "agents-auto", a.Job.Namespace)
		assert.Regexp(t, `^airlock-[a-z0-9]+-`+string(rune('0'+i))+`$`, a.Job.Name)
	}
	assert.Equal(t, "acc-inspect", res.Actions[0].LeaseAccessor)
	assert.Equal(t, []string{"acc-inspect", "acc-scale"}, released)
	assert.Equal(t, "cycle/auto/c1", res.WorkflowID)
}

func TestFailedJobRollsBackSkipsTheRestAndStillReleases(t *testing.T) {
	s := newEnv(t)
	var ran, released []string
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(stageOK)
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RunInput) (activities.RunOutput, error) {
			ran = append(ran, in.JobName)
			if len(ran) == 1 {
				return activities.RunOutput{Succeeded: false, Reason: "BackoffLimitExceeded", ExitCode: 1}, nil
			}
			return activities.RunOutput{Succeeded: true}, nil
		})
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ReleaseInput) (activities.ReleaseOutput, error) {
			released = append(released, in.LeaseAccessor)
			return activities.ReleaseOutput{}, nil
		})

	s.execute(request("auto", scale, inspect))
	var res contract.CycleResult
	require.NoError(t, s.env.GetWorkflowResult(&res))

	assert.Equal(t, contract.OutcomeFailed, res.Outcome)
	assert.Equal(t, contract.OutcomeFailed, res.Actions[0].Outcome)
	assert.Contains(t, res.Actions[0].Error, "exit code 1")
	require.NotNil(t, res.Actions[0].Rollback, "autonomous failure runs the rollback action")
	assert.Equal(t, "unscale", res.Actions[0].Rollback.Type)
	assert.Equal(t, contract.OutcomeSucceeded, res.Actions[0].Rollback.Outcome)
	assert.NotEqual(t, res.Actions[0].Job.Name, res.Actions[0].Rollback.Job.Name)
	assert.Equal(t, contract.OutcomeSkipped, res.Actions[1].Outcome)
	assert.Len(t, ran, 2, "the failed action and its rollback ran; the skipped one did not")
	assert.Equal(t, []string{"acc-scale", "acc-unscale"}, released)
}

func TestStageFailureRunsNothingAndReleasesByJobName(t *testing.T) {
	s := newEnv(t)
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(activities.StageOutput{},
		temporal.NewNonRetryableApplicationError("image not pinned", contract.ErrTypeInvalidAction, nil))
	var rel activities.ReleaseInput
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ReleaseInput) (activities.ReleaseOutput, error) {
			rel = in
			return activities.ReleaseOutput{}, nil
		})

	s.execute(request("auto", inspect))
	var res contract.CycleResult
	require.NoError(t, s.env.GetWorkflowResult(&res))
	assert.Equal(t, contract.OutcomeFailed, res.Outcome)
	assert.Contains(t, res.Actions[0].Error, "image not pinned")
	assert.Equal(t, res.Actions[0].Job.Name, rel.JobName, "release still targets the job, to revoke a lease made before the failure")
	assert.Empty(t, rel.LeaseAccessor)
}

func TestCancelDuringJobDeletesTheJobAndRevokes(t *testing.T) {
	s := newEnv(t)
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(stageOK)
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ activities.RunInput) (activities.RunOutput, error) {
			s.env.CancelWorkflow() // while the Job runs
			<-ctx.Done()
			return activities.RunOutput{}, ctx.Err()
		})
	var rel activities.ReleaseInput
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ReleaseInput) (activities.ReleaseOutput, error) {
			rel = in
			return activities.ReleaseOutput{}, nil
		})

	s.execute(request("auto", scale))
	err := s.env.GetWorkflowError()
	require.Error(t, err)
	var canceled *temporal.CanceledError
	assert.True(t, errors.As(err, &canceled), "got %v", err)
	assert.True(t, rel.DeleteJob, "cancellation deletes the Job")
	assert.Equal(t, "acc-scale", rel.LeaseAccessor, "and revokes its lease")
}

func TestShadowWriteIsRecordedNeverRun(t *testing.T) {
	s := newEnv(t)
	s.env.OnActivity(s.acts.StageAction, mock.Anything, mock.Anything).Return(stageOK)
	s.env.OnActivity(s.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true}, nil)
	s.env.OnActivity(s.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil)
	s.env.OnActivity(s.acts.DryRunAction, mock.Anything, mock.Anything).Return(activities.DryRunOutput{Admitted: true}, nil)

	s.execute(request("shadowy", inspect, scale))
	var res contract.CycleResult
	require.NoError(t, s.env.GetWorkflowResult(&res))
	assert.Equal(t, contract.OutcomeSucceeded, res.Actions[0].Outcome, "shadow reads run")
	assert.Equal(t, contract.OutcomeWouldDo, res.Actions[1].Outcome)
	require.NotNil(t, res.Actions[1].Rendered)
	assert.Equal(t, []string{"scale", "3"}, res.Actions[1].Rendered.Command)
	assert.Equal(t, "admitted", res.Actions[1].DryRun)
	s.env.AssertNumberOfCalls(t, "RunJob", 1)
}

func TestInvalidRequestFailsNonRetryablyBeforeAnythingRuns(t *testing.T) {
	tests := map[string]struct {
		req  contract.CycleRequest
		want string
	}{
		"missing cycle id":  {contract.CycleRequest{AgentID: "auto", Actions: []policy.Proposal{inspect}}, "cycle_id: required"},
		"unknown agent":     {request("ghost", inspect), `agent_id: unknown agent "ghost"`},
		"unknown action":    {request("auto", policy.Proposal{Type: "drop-db"}), `actions[0].type: unknown action type "drop-db"`},
		"params do not fit": {request("auto", policy.Proposal{Type: "scale", Params: map[string]any{"replicas": "many"}}), "actions[0].params.replicas: got string, want integer"},
		"confidence > 1":    {contract.CycleRequest{AgentID: "auto", CycleID: "x", Thoughts: []contract.Thought{{Content: "x", Confidence: 2}}, Actions: []policy.Proposal{inspect}}, "thoughts[0].confidence"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newEnv(t)
			s.execute(tc.req)
			err := s.env.GetWorkflowError()
			require.Error(t, err)
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "got %v", err)
			assert.Equal(t, contract.ErrTypeInvalidRequest, appErr.Type())
			assert.True(t, appErr.NonRetryable())
			assert.Contains(t, err.Error(), tc.want)
			s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
		})
	}
}
