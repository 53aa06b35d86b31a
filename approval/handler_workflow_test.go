package approval

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"
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
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/workflows"
)

// The handler in front of the real AgentCycle workflow, run by Temporal's
// test environment with its activities mocked: a click goes through the
// signed endpoint, the Decider sends it as the workflow's Update, and the
// workflow's validator and state decide what happens.

const cycleCatalog = `
actions:
  - name: scale-deployment
    image: registry.example/kubectl@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
    command: ["kubectl", "scale", "deploy/web", "--replicas={{.replicas}}"]
    params_schema: {type: object, required: [replicas], properties: {replicas: {type: integer}}}
    class: write
    risk: high
    vault_policies: [rw]
  - name: drop-table
    image: registry.example/psql@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
    command: ["psql", "-c", "drop table widgets"]
    class: write
    risk: critical
    vault_policies: [rw]
agents:
  - id: ops-bot
    owner: team
    approvers: [U0ALICE, U0BOB, U0CAROL]
    namespace: agents-ops
    actions: [scale-deployment, drop-table]
    phases: {read: autonomous, write: advisory}
    approval_timeout: 10m
`

// agentKey signs and verifies as every agent's (fake) Transit key would.
type agentKey struct{}

func (agentKey) signature(agent string, data []byte) string {
	sum := sha256.Sum256(append([]byte("key of "+agent+"\x00"), data...))
	return "vault:v1:" + base64.StdEncoding.EncodeToString(sum[:])
}

func (k agentKey) Sign(_ context.Context, agent string, data []byte) (contract.Signature, error) {
	return contract.Signature{Key: vault.AgentKeyName(agent), KeyVersion: 1, Value: k.signature(agent, data)}, nil
}

func (k agentKey) Verify(_ context.Context, agent string, data []byte, sig string) (vault.Verification, error) {
	if sig != k.signature(agent, data) {
		return vault.Verification{}, vault.ErrBadSignature
	}
	return vault.Verification{Key: "transit/" + vault.AgentKeyName(agent), KeyVersion: 1}, nil
}

// updateDecider is starter.Client.Decide in the test environment: it sends
// the decision as the workflow's Update and turns a rejection by the
// validator into a starter.RefusedError, as production does.
type updateDecider struct {
	env *testsuite.TestWorkflowEnvironment
	// queued receives a token for each Update handed to the environment.
	queued chan struct{}
	n      atomic.Int64
}

func (u *updateDecider) Decide(ctx context.Context, workflowID string, d contract.Decision) (contract.DecisionResult, error) {
	type reply struct {
		res contract.DecisionResult
		err error
	}
	done := make(chan reply, 1)
	err := u.env.UpdateWorkflowByID(workflowID, contract.UpdateDecide, "click-"+strconv.FormatInt(u.n.Add(1), 10), &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(err error) {
			reason := err.Error()
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) {
				reason = appErr.Message()
			}
			done <- reply{err: &starter.RefusedError{Reason: reason}}
		},
		OnComplete: func(v any, err error) {
			res, _ := v.(contract.DecisionResult)
			done <- reply{res: res, err: err}
		},
	}, d)
	if err != nil {
		return contract.DecisionResult{}, &starter.RefusedError{Reason: "cycle " + workflowID + " is not running"}
	}
	u.queued <- struct{}{}
	select {
	case a := <-done:
		return a.res, a.err
	case <-ctx.Done():
		return contract.DecisionResult{}, ctx.Err()
	}
}

// cycleEnv runs AgentCycle for agent ops-bot and serves clicks to it.
type cycleEnv struct {
	testsuite.WorkflowTestSuite
	env  *testsuite.TestWorkflowEnvironment
	acts *activities.Activities
	h    *Handler
	dec  *updateDecider

	mu      sync.Mutex
	notices map[int]contract.Notice // the approval messages the workflow posted, by action
	staged  map[int]bool            // the actions staged so far
}

func newCycleEnv(t *testing.T) *cycleEnv {
	t.Helper()
	cat, err := policy.Parse("cycle.yaml", []byte(cycleCatalog))
	require.NoError(t, err)
	c := &cycleEnv{
		acts:    &activities.Activities{Catalog: cat, Identity: agentKey{}},
		notices: map[int]contract.Notice{},
		staged:  map[int]bool{},
	}
	c.env = c.NewTestWorkflowEnvironment()
	c.env.SetTestTimeout(20 * time.Second)
	c.env.RegisterWorkflowWithOptions(workflows.AgentCycle, workflow.RegisterOptions{Name: contract.CycleWorkflowName})
	c.env.RegisterActivity(c.acts)
	c.env.RegisterActivityWithOptions(func(context.Context, contract.Notice) (contract.MessageRef, error) {
		return contract.MessageRef{}, nil
	}, activity.RegisterOptions{Name: contract.ActivityPostApproval})
	c.env.RegisterActivityWithOptions(func(context.Context, contract.NoticeUpdate) error { return nil },
		activity.RegisterOptions{Name: contract.ActivityUpdateApproval})

	// The Slack side records what would be posted; the Kubernetes and Vault
	// side succeeds. Nothing may be staged or run but what the test expects.
	c.env.OnActivity(contract.ActivityPostApproval, mock.Anything, mock.Anything).Return(
		func(_ context.Context, n contract.Notice) (contract.MessageRef, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.notices[n.Pending.Action.Index] = n
			return contract.MessageRef{Channel: "C0APPROVE", TS: "1700000000.00000" + strconv.Itoa(n.Pending.Action.Index)}, nil
		})
	c.env.OnActivity(contract.ActivityUpdateApproval, mock.Anything, mock.Anything).Return(nil)
	// Release follows whatever was staged; a cycle denied outright has none.
	c.env.OnActivity(c.acts.ReleaseAction, mock.Anything, mock.Anything).Return(activities.ReleaseOutput{}, nil).Maybe()
	// The agent is active at the catalog's phases and takes every report.
	c.acts.AgentStates = activeAgents{}
	c.env.OnActivity(c.acts.ReportCycle, mock.Anything, mock.Anything).Return(contract.ReportCycleResult{Counted: true}, nil)

	c.dec = &updateDecider{env: c.env, queued: make(chan struct{}, 1)}
	c.h, err = NewHandler(HandlerConfig{SigningSecret: testSecret, Decider: c.dec, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.h.Close()) })
	return c
}

// expectRun lets action index be staged and run, once.
func (c *cycleEnv) expectRun(index int) {
	isAction := func(in activities.StageInput) bool { return in.Action.Index == index }
	c.env.OnActivity(c.acts.StageAction, mock.Anything, mock.MatchedBy(isAction)).Return(
		func(_ context.Context, in activities.StageInput) (activities.StageOutput, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.staged[index] = true
			return activities.StageOutput{Namespace: in.Namespace, JobName: "job", LeaseAccessor: "acc", LeaseTTL: time.Minute}, nil
		}).Once()
	c.env.OnActivity(c.acts.RunJob, mock.Anything, mock.Anything).Return(activities.RunOutput{Succeeded: true, Reason: "Completed"}, nil).Once()
}

func (c *cycleEnv) notice(index int) (contract.Notice, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.notices[index]
	return n, ok
}

func (c *cycleEnv) wasStaged(index int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.staged[index]
}

// click describes one button press on the message posted for an action.
type cycleClick struct {
	index  int
	user   string
	kind   contract.DecisionKind
	secret string // signs the request; Default: testSecret
	hash   string // replaces the button's hash (a stale message)
}

// clickAt presses a button at workflow time at and returns the handler's
// answer. The callback returns once the handler has answered without the
// workflow or has handed the Update to the environment, which runs it
// after the callback returns.
func (c *cycleEnv) clickAt(t *testing.T, at time.Duration, k cycleClick) <-chan *httptest.ResponseRecorder {
	answered := make(chan *httptest.ResponseRecorder, 1)
	c.env.RegisterDelayedCallback(func() {
		n, ok := c.notice(k.index)
		require.True(t, ok, "no message was posted for action %d", k.index)
		value := buttonOf(t, n, ActionID(k.kind))
		if k.hash != "" {
			v, err := ParseButtonValue(value)
			require.NoError(t, err)
			v.ActionHash = k.hash
			value, err = v.Encode()
			require.NoError(t, err)
		}
		secret := k.secret
		if secret == "" {
			secret = testSecret
		}
		body := formBody(clickPayload(t, clickSpec{User: k.user, ActionID: ActionID(k.kind), Value: value,
			ActionTS: strconv.Itoa(int(at / time.Second)), Pending: &n.Pending}))
		req := signedRequest(secret, time.Now(), body)

		served := make(chan struct{})
		go func() {
			defer close(served)
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, req)
			answered <- rec
		}()
		select {
		case <-c.dec.queued:
		case <-served:
		}
	}, at)
	return answered
}

// buttonOf returns the value of the button actionID in the message the
// workflow asked to post.
func buttonOf(t *testing.T, n contract.Notice, actionID string) string {
	t.Helper()
	blocks, err := Message(n.Pending, n.Mode)
	require.NoError(t, err)
	for _, b := range blocks {
		ab, ok := b.(*slack.ActionBlock)
		if !ok {
			continue
		}
		for _, el := range ab.Elements.ElementSet {
			if btn, ok := el.(*slack.ButtonBlockElement); ok && btn.ActionID == actionID {
				return btn.Value
			}
		}
	}
	require.Failf(t, "no such button", "%s in the message for action %d", actionID, n.Pending.Action.Index)
	return ""
}

// pendingAt checks, at workflow time at, what the pending query shows.
func (c *cycleEnv) pendingAt(t *testing.T, at time.Duration, check func([]contract.PendingAction)) {
	c.env.RegisterDelayedCallback(func() {
		v, err := c.env.QueryWorkflow(contract.QueryPending)
		require.NoError(t, err)
		var pending []contract.PendingAction
		require.NoError(t, v.Get(&pending))
		check(pending)
	}, at)
}

// run starts cycle c-42 of ops-bot, signed by the agent on behalf of
// U0CAROL (one of its approvers), and waits for it.
func (c *cycleEnv) run(t *testing.T, actions ...policy.Proposal) contract.CycleResult {
	t.Helper()
	req, err := starter.SignRequest(context.Background(), agentKey{}, contract.CycleRequest{
		AgentID: "ops-bot", CycleID: "c-42", Principal: "U0CAROL", Actions: actions,
	}, c.env.Now())
	require.NoError(t, err)
	c.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: contract.CycleWorkflowID("ops-bot", "c-42")})
	c.env.ExecuteWorkflow(contract.CycleWorkflowName, req)
	require.True(t, c.env.IsWorkflowCompleted())
	require.NoError(t, c.env.GetWorkflowError())
	var res contract.CycleResult
	require.NoError(t, c.env.GetWorkflowResult(&res))
	c.env.AssertExpectations(t)
	return res
}

// answer waits for the handler's answer to a click.
func answerOf(t *testing.T, ch <-chan *httptest.ResponseRecorder) (int, string) {
	t.Helper()
	select {
	case rec := <-ch:
		return rec.Code, rec.Body.String()
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the click was never answered")
		return 0, ""
	}
}

func TestHandlerOnTheCycleApprovesOnce(t *testing.T) {
	c := newCycleEnv(t)
	c.expectRun(0)
	nothingYet := func(pending []contract.PendingAction) {
		require.Len(t, pending, 1)
		assert.Equal(t, 0, pending[0].Action.Index)
		assert.Empty(t, pending[0].ApprovedBy)
		assert.False(t, c.wasStaged(0), "nothing was staged")
	}

	forged := c.clickAt(t, 1*time.Minute, cycleClick{user: "U0ALICE", kind: contract.DecisionApprove, secret: "not-the-secret"})
	c.pendingAt(t, 90*time.Second, nothingYet)
	stranger := c.clickAt(t, 2*time.Minute, cycleClick{user: "U0MALLORY", kind: contract.DecisionApprove})
	stale := c.clickAt(t, 3*time.Minute, cycleClick{user: "U0ALICE", kind: contract.DecisionApprove, hash: "0ldha5h"})
	self := c.clickAt(t, 4*time.Minute, cycleClick{user: "U0CAROL", kind: contract.DecisionApprove})
	c.pendingAt(t, 270*time.Second, nothingYet)
	approve := c.clickAt(t, 5*time.Minute, cycleClick{user: "U0ALICE", kind: contract.DecisionApprove})
	// The second action keeps the cycle open for a late second click.
	again := c.clickAt(t, 6*time.Minute, cycleClick{user: "U0ALICE", kind: contract.DecisionApprove})

	res := c.run(t,
		policy.Proposal{Type: "scale-deployment", Params: map[string]any{"replicas": 5}},
		policy.Proposal{Type: "scale-deployment", Params: map[string]any{"replicas": 6}})

	code, text := answerOf(t, forged)
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Equal(t, "invalid signature\n", text)
	code, text = answerOf(t, stranger)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, "refused: U0MALLORY is not an approver of agent ops-bot\n", text, "the workflow's validator says why")
	code, text = answerOf(t, stale)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, text, "refused: stale decision")
	code, text = answerOf(t, self)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, "refused: U0CAROL requested this cycle and cannot decide on it\n", text, "nobody approves their own request")
	code, text = answerOf(t, approve)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "approved\n", text)
	code, text = answerOf(t, again)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "already decided\n", text, "a second click is harmless")

	require.Len(t, res.Actions, 2)
	first := res.Actions[0]
	assert.Equal(t, contract.OutcomeSucceeded, first.Outcome, "approved, then staged and run")
	require.Len(t, first.Decisions, 1, "only the signed click by an approver is recorded")
	assert.Equal(t, "U0ALICE", first.Decisions[0].Approver)
	assert.Equal(t, "slack", first.Decisions[0].Via)
	assert.True(t, c.wasStaged(0), "staged once approved, not before")
	assert.Equal(t, contract.OutcomeDenied, res.Actions[1].Outcome, "nobody approved the second action")
}

func TestHandlerOnTheCycleCriticalNeedsTwoApprovers(t *testing.T) {
	c := newCycleEnv(t)
	c.expectRun(0)
	approve := func(user string) cycleClick {
		return cycleClick{user: user, kind: contract.DecisionApprove}
	}
	alice := c.clickAt(t, 1*time.Minute, approve("U0ALICE"))
	aliceAgain := c.clickAt(t, 2*time.Minute, approve("U0ALICE"))
	c.pendingAt(t, 150*time.Second, func(pending []contract.PendingAction) {
		require.Len(t, pending, 1)
		assert.Equal(t, 2, pending[0].Needed)
		assert.Equal(t, []string{"U0ALICE"}, pending[0].ApprovedBy, "one approver clicking twice is not two")
		assert.False(t, c.wasStaged(0))
	})
	bob := c.clickAt(t, 3*time.Minute, approve("U0BOB"))

	res := c.run(t, policy.Proposal{Type: "drop-table"})

	code, text := answerOf(t, alice)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "waiting\n", text)
	_, text = answerOf(t, aliceAgain)
	assert.Equal(t, "already decided\n", text)
	_, text = answerOf(t, bob)
	assert.Equal(t, "approved\n", text)

	require.Len(t, res.Actions, 1)
	assert.Equal(t, contract.OutcomeSucceeded, res.Actions[0].Outcome)
	var approvers []string
	for _, d := range res.Actions[0].Decisions {
		approvers = append(approvers, d.Approver)
	}
	assert.Equal(t, []string{"U0ALICE", "U0BOB"}, approvers)
}

var _ Decider = (*updateDecider)(nil)

// activeAgents says every agent is active at the catalog's phases.
type activeAgents struct{}

func (activeAgents) AgentState(context.Context, activities.AgentStateInput) (activities.AgentStateOutput, error) {
	return activities.AgentStateOutput{Status: contract.AgentActive}, nil
}
