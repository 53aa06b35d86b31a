package starter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/vault"
)

// A Vault-backed signer is what agents pass to WithSigner.
var _ starter.Signer = (*vault.Signer)(nil)

// recordingSigner remembers what it was asked to sign.
type recordingSigner struct {
	agent string
	data  []byte
	err   error
}

func (r *recordingSigner) Sign(_ context.Context, agent string, data []byte) (contract.Signature, error) {
	r.agent, r.data = agent, data
	return contract.Signature{Key: vault.AgentKeyName(agent), KeyVersion: 3, Value: "vault:v3:c2ln"}, r.err
}

func request() contract.CycleRequest {
	return contract.CycleRequest{AgentID: "sample", CycleID: "c1", Principal: "agent:sample",
		Actions: []policy.Proposal{{Type: "cluster-read", Params: map[string]any{"service": "checkout"}}}}
}

func TestSignRequestSignsTheCanonicalBytesAsTheAgent(t *testing.T) {
	s := &recordingSigner{}
	at := time.Date(2026, 11, 25, 15, 3, 7, 999, time.FixedZone("CET", 3600))
	signed, err := starter.SignRequest(t.Context(), s, request(), at)
	require.NoError(t, err)
	assert.Equal(t, &contract.RequestSignature{Key: "airlock-agent-sample", KeyVersion: 3, SignedAt: "2026-11-25T14:03:07Z", Signature: "vault:v3:c2ln"}, signed.Signature)
	assert.Equal(t, "sample", s.agent)
	want, err := contract.CanonicalRequest(signed)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(s.data), "what was signed is what the worker will canonicalize")
	assert.Contains(t, string(s.data), `"signed_at":"2026-11-25T14:03:07Z"`)
}

func TestStartSignsWithTheSigner(t *testing.T) {
	tc := &mocks.Client{}
	var sent contract.CycleRequest
	tc.On("ExecuteWorkflow", mock.Anything, mock.MatchedBy(func(o client.StartWorkflowOptions) bool { return o.ID == "cycle/sample/c1" }),
		contract.CycleWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) { sent = args.Get(3).(contract.CycleRequest) }).
		Return(&mocks.WorkflowRun{}, nil)

	t.Run("unsigned requests are signed", func(t *testing.T) {
		wr := &mocks.WorkflowRun{}
		wr.On("GetRunID").Return("r1")
		tc.ExpectedCalls[0].ReturnArguments = mock.Arguments{wr, nil}
		_, err := starter.New(tc, starter.WithSigner(&recordingSigner{})).Start(t.Context(), request())
		require.NoError(t, err)
		require.NotNil(t, sent.Signature)
		assert.Equal(t, "vault:v3:c2ln", sent.Signature.Signature)
		assert.NotEmpty(t, sent.Signature.SignedAt)
	})
	t.Run("signed requests are sent as they are", func(t *testing.T) {
		wr := &mocks.WorkflowRun{}
		wr.On("GetRunID").Return("r2")
		tc.ExpectedCalls[0].ReturnArguments = mock.Arguments{wr, nil}
		req := request()
		req.Signature = &contract.RequestSignature{SignedAt: "2026-11-25T14:03:07Z", Signature: "vault:v1:from-elsewhere"}
		_, err := starter.New(tc, starter.WithSigner(&recordingSigner{})).Start(t.Context(), req)
		require.NoError(t, err)
		assert.Equal(t, "vault:v1:from-elsewhere", sent.Signature.Signature)
	})
	t.Run("a signing failure starts nothing", func(t *testing.T) {
		calls := len(tc.Calls)
		_, err := starter.New(tc, starter.WithSigner(&recordingSigner{err: errors.New("HTTP 403: permission denied")})).Start(t.Context(), request())
		require.ErrorContains(t, err, "sign request: HTTP 403")
		assert.Len(t, tc.Calls, calls)
	})
}

// encoded is a query answer, as the client decodes it.
type encoded struct{ v any }

func (e encoded) HasValue() bool { return e.v != nil }
func (e encoded) Get(ptr any) error {
	b, err := json.Marshal(e.v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, ptr)
}

// `cycle pending --details` lists what waits highest risk first, then
// oldest cycle first, as `cycle pending` orders cycles.
func TestAllPendingOrdersByRiskThenAge(t *testing.T) {
	tc := &mocks.Client{}
	at := func(min int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 11, 29, 10, min, 0, 0, time.UTC))
	}
	cycles := map[string]struct {
		started *timestamppb.Timestamp
		risks   []policy.Risk
	}{
		"cycle/a/new-low":       {at(30), []policy.Risk{policy.RiskLow}},
		"cycle/a/old-medium":    {at(1), []policy.Risk{policy.RiskMedium}},
		"cycle/b/new-critical":  {at(40), []policy.Risk{policy.RiskCritical}},
		"cycle/b/old-crit-high": {at(2), []policy.Risk{policy.RiskHigh, policy.RiskCritical}},
	}
	var execs []*workflowpb.WorkflowExecutionInfo
	for _, id := range []string{"cycle/a/new-low", "cycle/a/old-medium", "cycle/b/new-critical", "cycle/b/old-crit-high"} {
		c := cycles[id]
		execs = append(execs, &workflowpb.WorkflowExecutionInfo{Execution: &commonpb.WorkflowExecution{WorkflowId: id}, StartTime: c.started})
		var pend []contract.PendingAction
		for i, r := range c.risks {
			pend = append(pend, contract.PendingAction{WorkflowID: id, Action: policy.RenderedAction{Index: i, Risk: r}})
		}
		tc.On("QueryWorkflow", mock.Anything, id, "", contract.QueryPending).Return(encoded{pend}, nil)
	}
	tc.On("ListWorkflow", mock.Anything, mock.Anything).Return(&workflowservice.ListWorkflowExecutionsResponse{Executions: execs}, nil)

	got, err := starter.New(tc).AllPending(t.Context())
	require.NoError(t, err)
	var order []string
	for _, p := range got {
		order = append(order, fmt.Sprintf("%s#%d %s", p.WorkflowID, p.Action.Index, p.Action.Risk))
	}
	assert.Equal(t, []string{
		"cycle/b/old-crit-high#1 critical",
		"cycle/b/new-critical#0 critical",
		"cycle/b/old-crit-high#0 high",
		"cycle/a/old-medium#0 medium",
		"cycle/a/new-low#0 low",
	}, order)
}

// Shadow feedback goes to the agent's workflow; a cycle from before that
// (the agent holds no such proposal) still gets it itself. Approvals always
// go to the cycle.
func TestDecideRoutesShadowFeedbackToTheAgent(t *testing.T) {
	var calls []string
	tc := &mocks.Client{}
	tc.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(
		func(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
			calls = append(calls, o.WorkflowID+" "+o.UpdateName)
			h := &mocks.WorkflowUpdateHandle{}
			switch {
			case o.WorkflowID == "agent/old":
				h.On("Get", mock.Anything, mock.Anything).Return(
					temporal.NewNonRetryableApplicationError("no shadow proposal 0 of cycle/old/c1 awaits feedback", contract.ErrTypeUnknownProposal, nil))
			case o.WorkflowID == "agent/a":
				h.On("Get", mock.Anything, mock.Anything).Return(temporal.NewApplicationError("U9 is not an approver of agent a", ""))
			default:
				h.On("Get", mock.Anything, mock.Anything).Return(nil)
			}
			return h, nil
		})
	st := starter.New(tc)
	agree := contract.Decision{ActionIndex: 0, ActionHash: "h", Kind: contract.DecisionAgree, Approver: "U9", Via: "slack"}

	_, err := st.Decide(t.Context(), "cycle/a/c1", agree)
	var refused *starter.RefusedError
	require.ErrorAs(t, err, &refused, "the agent's refusal is the answer")
	assert.Equal(t, "U9 is not an approver of agent a", refused.Reason)

	_, err = st.Decide(t.Context(), "cycle/old/c1", agree)
	require.NoError(t, err)

	approve := agree
	approve.Kind = contract.DecisionApprove
	_, err = st.Decide(t.Context(), "cycle/a/c2", approve)
	require.NoError(t, err)

	assert.Equal(t, []string{
		"agent/a feedback",
		"agent/old feedback", "cycle/old/c1 decide",
		"cycle/a/c2 decide",
	}, calls)
}
