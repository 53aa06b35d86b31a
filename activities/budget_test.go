package activities_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// agentAnswers makes the fixture's Agent workflow answer every Update
// with err (from the update's result), recording what was asked.
func (f *fixture) agentAnswers(updateErr, resultErr error) *[]client.UpdateWorkflowOptions {
	var sent []client.UpdateWorkflowOptions
	tc := &mocks.Client{}
	h := &mocks.WorkflowUpdateHandle{}
	h.On("Get", mock.Anything, mock.Anything).Return(resultErr)
	call := tc.On("UpdateWorkflow", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		sent = append(sent, args.Get(1).(client.UpdateWorkflowOptions))
	})
	if updateErr != nil {
		call.Return(nil, updateErr)
	} else {
		call.Return(h, nil)
	}
	f.acts.Temporal = tc
	return &sent
}

// Over budget, staging fails at once (non-retryable, the budget named in
// the error and its details) before anything is created or leased.
func TestStageOverBudgetCreatesAndLeasesNothing(t *testing.T) {
	f := newFixture(t)
	be := policy.BudgetError{Budget: policy.BudgetRunningJobs, AgentID: "stager", Used: 1, Limit: 1}
	sent := f.agentAnswers(nil, temporal.NewApplicationError(be.Error(), contract.ErrTypeBudgetExhausted, be))
	in := f.input(t, "write")
	_, err := f.stage(in)

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, contract.ErrTypeBudgetExhausted, appErr.Type())
	assert.True(t, appErr.NonRetryable())
	assert.Equal(t, `budget "running_jobs" exhausted: 1 of 1 Jobs already run for agent stager`, appErr.Message())
	var got policy.BudgetError
	require.NoError(t, appErr.Details(&got))
	assert.Equal(t, be, got)

	require.Len(t, *sent, 1)
	u := (*sent)[0]
	assert.Equal(t, "agent/stager", u.WorkflowID)
	assert.Equal(t, contract.UpdateReserve, u.UpdateName)
	req := u.Args[0].(contract.ReserveRequest)
	assert.Equal(t, contract.BudgetHold{AgentID: "stager", WorkflowID: in.WorkflowID, Index: 0, Kind: policy.BudgetRun}, req.BudgetHold)
	assert.False(t, req.Until.IsZero(), "a hold nobody releases lapses")

	_, err = f.kube.BatchV1().Jobs("airlock-stage").Get(t.Context(), f.job(t, in), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "no Job: %v", err)
	assert.Empty(t, f.liveTokens(t, f.job(t, in)), "no token")
}

// An agent without an Agent workflow (a cycle from before agents had live
// state) has no budget to count against: staging goes on. Any other
// failure to reach it is retried (staging retries with backoff), never
// taken as a grant.
func TestStageBudgetWithoutOrUnreachableAgent(t *testing.T) {
	f := newFixture(t)
	f.agentAnswers(serviceerror.NewNotFound("workflow not found"), nil)
	out, err := f.stage(f.input(t, "write"))
	require.NoError(t, err)
	assert.NotEmpty(t, out.LeaseAccessor)

	f.agentAnswers(serviceerror.NewUnavailable("frontend down"), nil)
	in := f.input(t, "write")
	_, err = f.stage(in)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.False(t, appErr.NonRetryable())
	assert.Contains(t, err.Error(), "reserve run budget of agent stager")
	_, err = f.kube.BatchV1().Jobs("airlock-stage").Get(t.Context(), f.job(t, in), metav1.GetOptions{})
	assert.True(t, k8serrors.IsNotFound(err), "no Job: %v", err)
}
