package starter_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

func TestStaticSummary(t *testing.T) {
	scale := policy.Proposal{Type: "scale-deployment", Params: map[string]any{"deployment": "checkout", "replicas": 5}}
	read := policy.Proposal{Type: "cluster-read", Params: map[string]any{"service": "checkout"}}
	tests := map[string]struct {
		actions []policy.Proposal
		want    string
	}{
		"target and value":       {actions: []policy.Proposal{scale}, want: "advisor: scale-deployment checkout→5"},
		"a read, then the write": {actions: []policy.Proposal{read, scale}, want: "advisor: cluster-read checkout, scale-deployment checkout→5"},
		"no parameters":          {actions: []policy.Proposal{{Type: "noop"}}, want: "advisor: noop"},
		"targets sorted by key": {actions: []policy.Proposal{{Type: "restart", Params: map[string]any{"namespace": "shop", "deployment": "cart", "force": true}}},
			want: "advisor: restart cart/shop→true"},
		"beyond three actions, counted": {actions: []policy.Proposal{read, read, read, scale, scale}, want: "advisor: cluster-read checkout, cluster-read checkout, cluster-read checkout, +2 more"},
		"one line":                      {actions: []policy.Proposal{{Type: "note", Params: map[string]any{"text": "a\nb\tc"}}}, want: "advisor: note a b c"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, starter.StaticSummary(contract.CycleRequest{AgentID: "advisor", Actions: tc.actions}))
		})
	}
	t.Run("long values are clipped", func(t *testing.T) {
		got := starter.StaticSummary(contract.CycleRequest{AgentID: "advisor", Actions: []policy.Proposal{
			{Type: "t", Params: map[string]any{"a": strings.Repeat("x", 500), "b": strings.Repeat("é", 500)}},
		}})
		assert.LessOrEqual(t, utf8.RuneCountInString(got), 160)
		assert.True(t, utf8.ValidString(got))
		assert.Contains(t, got, "…")
	})
}

func TestStartSetsTheStaticSummaryAndDetails(t *testing.T) {
	tc := &mocks.Client{}
	var opts client.StartWorkflowOptions
	wr := &mocks.WorkflowRun{}
	wr.On("GetRunID").Return("r1")
	tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, contract.CycleWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) { opts = args.Get(1).(client.StartWorkflowOptions) }).
		Return(wr, nil)
	req := request()
	req.Actions[0].Rationale = "confirm the service is healthy"
	_, err := starter.New(tc, starter.WithSigner(&recordingSigner{})).Start(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, "sample: cluster-read checkout", opts.StaticSummary)
	assert.Contains(t, opts.StaticDetails, "Cycle c1 of agent sample, asked by agent:sample")
	assert.Contains(t, opts.StaticDetails, "- #0 cluster-read checkout: confirm the service is healthy")
	assert.NotContains(t, opts.StaticDetails, "vault:v3", "the signature is not a detail")
}
