package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/vault"
)

// testSigner signs env.starter's requests. It holds the dev root token, so
// it can sign as any agent of the test catalog: it stands in for each
// agent's own login in tests that are not about identity. The tests below
// log in as the real agents.
var testSigner *vault.Signer

// newTestSigner is called once by setup.
func newTestSigner(stack *devstack.Stack) starter.Signer {
	s, err := vault.NewSigner(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken})
	if err != nil {
		panic("e2e: signer: " + err.Error())
	}
	testSigner = s
	return s
}

// agentLogin logs in through agentID's AppRole (created by devsetup) as
// the agent process would, and returns its token. The token is an agent's
// own credential: it stays in this test, never in a workflow input.
func agentLogin(ctx context.Context, t *testing.T, agentID string) string {
	t.Helper()
	id, err := env.broker.EnsureAgentIdentity(ctx, agentID)
	require.NoError(t, err)
	sid, err := env.broker.AgentSecretID(ctx, agentID)
	require.NoError(t, err)
	cfg := api.DefaultConfig()
	cfg.Address = env.stack.VaultAddr
	c, err := api.NewClient(cfg)
	require.NoError(t, err)
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+id.AppRoleMount+"/login", map[string]any{"role_id": id.RoleID, "secret_id": sid.Value()})
	require.NoError(t, err)
	return s.Auth.ClientToken
}

// agentSigner signs with agentID's own token.
func agentSigner(ctx context.Context, t *testing.T, agentID string) *vault.Signer {
	t.Helper()
	s, err := vault.NewSigner(vault.Config{Address: env.stack.VaultAddr, Token: agentLogin(ctx, t, agentID)})
	require.NoError(t, err)
	return s
}

// forger signs whatever it is given with its own agent's key, whichever
// agent the request claims: what a compromised agent can do at most.
type forger struct {
	s  *vault.Signer
	as string
}

func (f forger) Sign(ctx context.Context, _ string, data []byte) (contract.Signature, error) {
	return f.s.Sign(ctx, f.as, data)
}

// activitiesRun lists the activity types a workflow ran, local ones
// (Plan, VerifyRequest: recorded as markers) included, in order.
func activitiesRun(ctx context.Context, t *testing.T, wfID string) []string {
	t.Helper()
	var out []string
	for _, ev := range decodedHistory(t, rawHistory(ctx, t, wfID)).Events {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			out = append(out, ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName())
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			m := ev.GetMarkerRecordedEventAttributes()
			if m.GetMarkerName() != "LocalActivity" {
				continue
			}
			var data struct{ ActivityType string }
			p := m.GetDetails()["data"].GetPayloads()
			require.NotEmpty(t, p)
			require.NoError(t, json.Unmarshal(p[0].GetData(), &data))
			out = append(out, data.ActivityType)
		}
	}
	return out
}

// Invariant 9: a cycle runs only for an agent that proves it is that agent.
func TestInvariant9OnlyAVerifiedAgentGetsACycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const victim, attacker, ns = "e2e", "e2e-adv", "airlock-e2e"
	victimSigner := agentSigner(ctx, t, victim)
	attackerSigner := agentSigner(ctx, t, attacker)
	plain := starter.New(env.tc) // starts requests exactly as signed

	ask := func(t *testing.T) contract.CycleRequest {
		return contract.CycleRequest{AgentID: victim, CycleID: cycleID(t), Principal: "agent:" + victim,
			Thoughts: []contract.Thought{{Step: 1, Content: "write as the autonomous agent", Confidence: 0.9}},
			Actions:  []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "pwned"}}, {Type: "slow-write", Params: map[string]any{"target": "prod"}}}}
	}
	refusals := map[string]struct {
		sign   func(t *testing.T, req contract.CycleRequest) contract.CycleRequest
		reason string
		detail string
	}{
		"signed by another agent": {
			sign: func(t *testing.T, req contract.CycleRequest) contract.CycleRequest {
				r, err := starter.SignRequest(ctx, forger{attackerSigner, attacker}, req, time.Now())
				require.NoError(t, err)
				return r
			},
			reason: activities.UnverifiedOtherAgent, detail: "request claims agent e2e but was signed by agent e2e-adv",
		},
		"signed by another agent naming the victim key": {
			sign: func(t *testing.T, req contract.CycleRequest) contract.CycleRequest {
				r, err := starter.SignRequest(ctx, forger{attackerSigner, attacker}, req, time.Now())
				require.NoError(t, err)
				r.Signature.Key = vault.AgentKeyName(victim)
				return r
			},
			reason: activities.UnverifiedBadSignature, detail: "not signed by agent e2e",
		},
		"unsigned": {
			sign:   func(_ *testing.T, req contract.CycleRequest) contract.CycleRequest { return req },
			reason: activities.UnverifiedUnsigned,
		},
		"stale": {
			sign: func(t *testing.T, req contract.CycleRequest) contract.CycleRequest {
				r, err := starter.SignRequest(ctx, victimSigner, req, time.Now().Add(-10*time.Minute))
				require.NoError(t, err)
				return r
			},
			reason: activities.UnverifiedStale, detail: "more than 5m0s apart",
		},
		"altered after signing": {
			sign: func(t *testing.T, req contract.CycleRequest) contract.CycleRequest {
				r, err := starter.SignRequest(ctx, victimSigner, req, time.Now())
				require.NoError(t, err)
				r.Actions[1].Params["target"] = "everything"
				return r
			},
			reason: activities.UnverifiedBadSignature,
		},
	}
	for name, tc := range refusals {
		t.Run(name, func(t *testing.T) {
			req := tc.sign(t, ask(t))
			run, err := plain.Start(ctx, req)
			require.NoError(t, err)
			_, err = run.Get(ctx)
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "got %v", err)
			assert.Equal(t, contract.ErrTypeInvalidRequest, appErr.Type())
			assert.Contains(t, appErr.Message(), "unverified: "+tc.reason)
			assert.Contains(t, appErr.Message(), tc.detail)

			// Nothing was planned, leased or created. The refusal is only
			// reported to the claimed agent (counted as unverified).
			// And the trail's head is signed (audit.go), as every cycle's.
			var got []string
			closing := map[string]bool{}
			for _, name := range activitiesRun(ctx, t, run.WorkflowID) {
				if name == "ReportCycle" || name == "SignAuditHead" {
					closing[name] = true
					continue
				}
				got = append(got, name)
			}
			assert.True(t, closing["ReportCycle"], "the claimed agent counts the attempt")
			assert.True(t, closing["SignAuditHead"], "the refusal's trail is signed")
			if tc.reason == activities.UnverifiedUnsigned || tc.reason == activities.UnverifiedStale {
				assert.Empty(t, got, "refused before any other activity")
			} else {
				assert.Equal(t, []string{"VerifyRequest"}, got, "only the verification ran")
			}
			assert.Empty(t, jobsOf(ctx, t, ns, run.WorkflowID), "no Job")
			trail, err := env.starter.Audit(ctx, run.WorkflowID)
			require.NoError(t, err)
			for _, e := range trail {
				assert.NotContains(t, []string{contract.AuditPolicy, contract.AuditLease, contract.AuditJob}, e.Kind, "no decision, no token, no Job")
			}
			last := trail[len(trail)-1]
			if last.Kind == contract.AuditSignature {
				last = trail[len(trail)-2]
			}
			assert.Equal(t, contract.AuditIdentity, last.Kind)
			assert.Equal(t, "request refused: unverified: "+tc.reason, last.Summary)
		})
	}

	t.Run("an agent token cannot sign as another agent", func(t *testing.T) {
		st := starter.New(env.tc, starter.WithSigner(attackerSigner))
		req := ask(t)
		_, err := st.Start(ctx, req)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "403")
		_, err = env.tc.DescribeWorkflowExecution(ctx, contract.CycleWorkflowID(req.AgentID, req.CycleID), "")
		assert.Error(t, err, "nothing was started")
	})

	t.Run("the real agent runs and the trail names its key", func(t *testing.T) {
		st := starter.New(env.tc, starter.WithCatalog(env.catalog), starter.WithSigner(victimSigner))
		req := ask(t)
		run, err := st.Start(ctx, req)
		require.NoError(t, err)
		res, err := run.Get(ctx)
		require.NoError(t, err)
		assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
		assert.Len(t, jobsOf(ctx, t, ns, run.WorkflowID), 2)
		assert.Equal(t, []string{"VerifyRequest"}, activitiesRun(ctx, t, run.WorkflowID)[:1], "verified first")

		var verified *contract.AuditEntry
		for i, e := range res.Audit {
			if e.Kind == contract.AuditIdentity {
				verified = &res.Audit[i]
			}
		}
		require.NotNil(t, verified)
		assert.Equal(t, "agent:e2e", verified.Data["signer"])
		assert.Equal(t, "transit/airlock-agent-e2e", verified.Data["key"])
		assert.EqualValues(t, 1, verified.Data["key_version"])
		sig, _ := verified.Data["signature"].(string)
		assert.True(t, strings.HasPrefix(sig, "vault:v1:"), sig)
		assert.Nil(t, contract.VerifyAudit(res.Audit))
	})
}

// An agent in another language: the README's JavaScript signs through
// Vault's HTTP API with the agent's own token, and the worker accepts it.
// The token never enters the workflow.
func TestJavaScriptAgentSignsThroughVaultHTTP(t *testing.T) {
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node (20, on every machine of this project) runs the JavaScript signing check")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	token := agentLogin(ctx, t, "e2e")
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Principal: "agent:e2e",
		Thoughts: []contract.Thought{{Step: 1, Content: "from JavaScript: ünïcode & <tags>", Confidence: 0.75}},
		Actions:  []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "hi from js"}, Rationale: "say hi"}}}
	raw, err := json.Marshal(req)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "req.json")
	require.NoError(t, os.WriteFile(file, raw, 0o600))

	cmd := exec.CommandContext(ctx, node, "examples/sign-request.mjs", file)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+env.stack.VaultAddr, "VAULT_TOKEN="+token)
	out, err := cmd.Output()
	require.NoError(t, err)
	var signed contract.CycleRequest
	require.NoError(t, json.Unmarshal(out, &signed))
	require.NotNil(t, signed.Signature)
	assert.Equal(t, "airlock-agent-e2e", signed.Signature.Key)

	res, err := starter.New(env.tc).RunCycle(ctx, signed)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)

	var payloads strings.Builder
	walkPayloads(decodedHistory(t, rawHistory(ctx, t, res.WorkflowID)).ProtoReflect(), func(string) bool { return false },
		func(p *commonpb.Payload) { payloads.Write(p.GetData()) })
	assert.Contains(t, payloads.String(), signed.Signature.Signature, "the signature is recorded")
	assert.NotContains(t, payloads.String(), token, "no Vault token in the workflow")
}

// TestRecordIdentityHistories runs a verified cycle and an impersonation
// attempt and, with -record-histories, saves both for the replay tests in
// workflows/ (the histories from before verification stay as they are):
//
//	go test ./e2e -run TestRecordIdentityHistories -record-histories
func TestRecordIdentityHistories(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	own := agentSigner(ctx, t, "e2e")
	paths := map[string]struct {
		signer  starter.Signer
		refused bool
	}{
		"verified-identity":        {own, false},
		"unverified-impersonation": {forger{agentSigner(ctx, t, "e2e-adv"), "e2e-adv"}, true},
	}
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t), Principal: "agent:e2e",
				Thoughts: []contract.Thought{{Step: 1, Content: "recorded path " + name, Confidence: 0.5}},
				Actions:  []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "hi"}}}}
			req, err := starter.SignRequest(ctx, p.signer, req, time.Now())
			require.NoError(t, err)
			run, err := starter.New(env.tc).Start(ctx, req)
			require.NoError(t, err)
			res, err := run.Get(ctx)
			if p.refused {
				require.ErrorContains(t, err, "unverified: "+activities.UnverifiedOtherAgent)
			} else {
				require.NoError(t, err)
				require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
			}
			if !*record {
				return
			}
			hist := decodedHistory(t, rawHistory(ctx, t, run.WorkflowID))
			js, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(hist)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join("..", "workflows", "testdata", name+".json"), js, 0o644))
		})
	}
}

// `airlock cycle start` signs as the agent with the agent's own token
// (AIRLOCK_AGENT_VAULT_TOKEN); another agent's token cannot.
func TestCLISignsAsTheAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "from the CLI"}}}}
	raw, err := json.Marshal(req)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "req.json")
	require.NoError(t, os.WriteFile(file, raw, 0o600))

	t.Setenv("AIRLOCK_AGENT_VAULT_TOKEN", agentLogin(ctx, t, "e2e-adv"))
	out, err := cli(t, "cycle", "start", "-f", file)
	require.Error(t, err, out)
	assert.Contains(t, out, "sign as agent e2e")
	assert.Contains(t, out, "403")
	_, err = env.tc.DescribeWorkflowExecution(ctx, contract.CycleWorkflowID(req.AgentID, req.CycleID), "")
	assert.Error(t, err, "nothing was started")

	t.Setenv("AIRLOCK_AGENT_VAULT_TOKEN", agentLogin(ctx, t, "e2e"))
	out, err = cli(t, "cycle", "start", "-f", file, "--wait")
	require.NoError(t, err, out)
	assert.Contains(t, out, "outcome  succeeded")
}
