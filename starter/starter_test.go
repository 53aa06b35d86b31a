package starter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/workflows"
)

// recordingSigner remembers what it was asked to sign.
type recordingSigner struct {
	agent string
	data  []byte
	err   error
}

func (r *recordingSigner) Sign(_ context.Context, agent string, data []byte) (vault.Signature, error) {
	r.agent, r.data = agent, data
	return vault.Signature{Key: vault.AgentKeyName(agent), KeyVersion: 3, Value: "vault:v3:c2ln"}, r.err
}

func request() workflows.CycleRequest {
	return workflows.CycleRequest{AgentID: "sample", CycleID: "c1", Principal: "agent:sample",
		Actions: []policy.Proposal{{Type: "cluster-read", Params: map[string]any{"service": "checkout"}}}}
}

func TestSignRequestSignsTheCanonicalBytesAsTheAgent(t *testing.T) {
	s := &recordingSigner{}
	at := time.Date(2026, 11, 25, 15, 3, 7, 999, time.FixedZone("CET", 3600))
	signed, err := starter.SignRequest(t.Context(), s, request(), at)
	require.NoError(t, err)
	assert.Equal(t, &workflows.RequestSignature{Key: "airlock-agent-sample", KeyVersion: 3, SignedAt: "2026-11-25T14:03:07Z", Signature: "vault:v3:c2ln"}, signed.Signature)
	assert.Equal(t, "sample", s.agent)
	want, err := workflows.CanonicalRequest(signed)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(s.data), "what was signed is what the worker will canonicalize")
	assert.Contains(t, string(s.data), `"signed_at":"2026-11-25T14:03:07Z"`)
}

func TestStartSignsWithTheSigner(t *testing.T) {
	tc := &mocks.Client{}
	var sent workflows.CycleRequest
	tc.On("ExecuteWorkflow", mock.Anything, mock.MatchedBy(func(o client.StartWorkflowOptions) bool { return o.ID == "cycle/sample/c1" }),
		workflows.CycleWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) { sent = args.Get(3).(workflows.CycleRequest) }).
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
		req.Signature = &workflows.RequestSignature{SignedAt: "2026-11-25T14:03:07Z", Signature: "vault:v1:from-elsewhere"}
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
