package e2e

import (
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

var record = flag.Bool("record-histories", false, "record one history per phase path into ../workflows/testdata (for replay tests)")

// TestRecordHistories runs one cycle per phase path on the real stack and,
// with -record-histories, saves their histories for the replay tests in
// workflows/. Without the flag it still runs the paths (and checks them).
//
//	go test ./e2e -run TestRecordHistories -record-histories
func TestRecordHistories(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	endpoint := approvalEndpoint(t)
	decide := func(wfID string, kind contract.DecisionKind, user string) {
		msg := waitPosted(t, wfID)
		v := buttonValue(t, msg.Get("blocks"), approval.ActionID(kind))
		require.Equal(t, http.StatusOK, click(t, endpoint, user, approval.ActionID(kind), v, msg.Get("ts"), time.Now(), signingSecret).StatusCode)
	}
	write := policy.Proposal{Type: "quick-write", Params: map[string]any{"target": "db"}}
	read := policy.Proposal{Type: "echo", Params: map[string]any{"text": "hi"}}
	paths := []struct {
		name    string
		req     contract.CycleRequest
		human   func(wfID string)
		outcome contract.Outcome
	}{
		{"autonomous", contract.CycleRequest{AgentID: "e2e", Actions: []policy.Proposal{read, {Type: "slow-write", Params: map[string]any{"target": "x"}}}}, nil, contract.OutcomeSucceeded},
		{"autonomous-failure", contract.CycleRequest{AgentID: "e2e", Actions: []policy.Proposal{{Type: "broken"}, read}}, nil, contract.OutcomeFailed},
		{"advisory-approved", contract.CycleRequest{AgentID: "e2e-adv", Actions: []policy.Proposal{read, write}},
			func(id string) { decide(id, contract.DecisionApprove, "U1") }, contract.OutcomeSucceeded},
		{"advisory-denied", contract.CycleRequest{AgentID: "e2e-adv", Actions: []policy.Proposal{write}},
			func(id string) { decide(id, contract.DecisionDeny, "U2") }, contract.OutcomeDenied},
		{"shadow-agent-feedback", contract.CycleRequest{AgentID: "e2e-shadow", Actions: []policy.Proposal{read, write}}, nil, contract.OutcomeSucceeded},
		{"supervised-veto-passed", contract.CycleRequest{AgentID: "e2e-sup", Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "db"}}}}, nil, contract.OutcomeSucceeded},
		{"supervised-stopped", contract.CycleRequest{AgentID: "e2e-sup", Actions: []policy.Proposal{write}},
			func(id string) { decide(id, contract.DecisionStop, "U2") }, contract.OutcomeDenied},
		// Version 4: staging, dry-run and release as local activities.
		{"local-steps-autonomous", contract.CycleRequest{AgentID: "e2e", Actions: []policy.Proposal{read, {Type: "slow-write", Params: map[string]any{"target": "x"}}}}, nil, contract.OutcomeSucceeded},
		{"local-steps-advisory-approved", contract.CycleRequest{AgentID: "e2e-adv", Actions: []policy.Proposal{read, write}},
			func(id string) { decide(id, contract.DecisionApprove, "U1") }, contract.OutcomeSucceeded},
		{"local-steps-shadow", contract.CycleRequest{AgentID: "e2e-shadow", Actions: []policy.Proposal{read, write}}, nil, contract.OutcomeSucceeded},
		// Version 5 of verified-identity: signed trail heads, the report
		// alongside the final signature, the last hold released by it.
		{"signed-autonomous", contract.CycleRequest{AgentID: "e2e", Actions: []policy.Proposal{read, {Type: "slow-write", Params: map[string]any{"target": "x"}}}}, nil, contract.OutcomeSucceeded},
		{"signed-advisory-approved", contract.CycleRequest{AgentID: "e2e-adv", Actions: []policy.Proposal{read, write}},
			func(id string) { decide(id, contract.DecisionApprove, "U1") }, contract.OutcomeSucceeded},
		{"signed-advisory-denied", contract.CycleRequest{AgentID: "e2e-adv", Actions: []policy.Proposal{write}},
			func(id string) { decide(id, contract.DecisionDeny, "U2") }, contract.OutcomeDenied},
		{"signed-shadow", contract.CycleRequest{AgentID: "e2e-shadow", Actions: []policy.Proposal{read, write}}, nil, contract.OutcomeSucceeded},
		// Version 6: one version marker per cycle; a cycle that only
		// dry-runs sets its search attributes once.
		{"consolidated-autonomous", contract.CycleRequest{AgentID: "e2e", Actions: []policy.Proposal{read, {Type: "slow-write", Params: map[string]any{"target": "x"}}}}, nil, contract.OutcomeSucceeded},
		{"consolidated-advisory-approved", contract.CycleRequest{AgentID: "e2e-adv", Actions: []policy.Proposal{read, write}},
			func(id string) { decide(id, contract.DecisionApprove, "U1") }, contract.OutcomeSucceeded},
		{"consolidated-shadow", contract.CycleRequest{AgentID: "e2e-shadow", Actions: []policy.Proposal{read, write}}, nil, contract.OutcomeSucceeded},
		{"consolidated-shadow-only", contract.CycleRequest{AgentID: "e2e-shadow", Actions: []policy.Proposal{write}}, nil, contract.OutcomeSucceeded},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			req := p.req
			req.CycleID = cycleID(t)
			req.Thoughts = []contract.Thought{{Step: 1, Content: "recorded path " + p.name, Confidence: 0.5}}
			run, err := env.starter.Start(ctx, req)
			require.NoError(t, err)
			if p.human != nil {
				p.human(run.WorkflowID)
			}
			res, err := run.Get(ctx)
			require.NoError(t, err)
			require.Equal(t, p.outcome, res.Outcome, "%+v", res.Actions)
			if !*record {
				return
			}
			// Stored decrypted, so replay tests need no Vault.
			hist := decodedHistory(t, rawHistory(ctx, t, run.WorkflowID))
			js, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(hist)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join("..", "workflows", "testdata", p.name+".json"), js, 0o644))
		})
	}
}
