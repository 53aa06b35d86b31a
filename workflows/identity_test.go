package workflows_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
)

// fakeKeys stands in for Vault Transit: agent X's "signature" over data is
// a hash keyed by X, so only fakeSigner{as: X} produces it.
func fakeSignature(agent string, data []byte) string {
	sum := sha256.Sum256(append([]byte("private key of "+agent+"\x00"), data...))
	return "vault:v1:" + base64.StdEncoding.EncodeToString(sum[:])
}

type fakeVerifier struct{}

func (fakeVerifier) Verify(_ context.Context, agent string, data []byte, sig string) (vault.Verification, error) {
	if sig != fakeSignature(agent, data) {
		return vault.Verification{}, fmt.Errorf("verify signature of agent %s: %w", agent, vault.ErrBadSignature)
	}
	return vault.Verification{Key: "transit/" + vault.AgentKeyName(agent), KeyVersion: 1}, nil
}

// fakeSigner signs as agent `as`, whatever the request claims.
type fakeSigner struct{ as string }

func (f fakeSigner) Sign(_ context.Context, agent string, data []byte) (contract.Signature, error) {
	if f.as != "" {
		agent = f.as
	}
	return contract.Signature{Key: vault.AgentKeyName(agent), KeyVersion: 1, Value: fakeSignature(agent, data)}, nil
}

// signAs signs req with signer's (fake) key at the given time.
func signAs(signer string, req contract.CycleRequest, at time.Time) contract.CycleRequest {
	signed, err := starter.SignRequest(context.Background(), fakeSigner{as: signer}, req, at)
	if err != nil {
		panic(err)
	}
	return signed
}

// recordingMetrics is a metrics handler (what the SDK hands workflow code)
// that keeps the cycles finished and the policy denials recorded.
type recordingMetrics struct {
	mu       *sync.Mutex
	tags     map[string]string
	denials  *[]string
	finished *[]string
}

func newRecordingMetrics() *recordingMetrics {
	return &recordingMetrics{mu: &sync.Mutex{}, tags: map[string]string{}, denials: new([]string), finished: new([]string)}
}

func (m *recordingMetrics) WithTags(tags map[string]string) client.MetricsHandler {
	c := *m
	c.tags = maps.Clone(m.tags)
	maps.Copy(c.tags, tags)
	return &c
}

func (m *recordingMetrics) Counter(name string) client.MetricsCounter {
	return counterFunc(func(int64) {
		m.mu.Lock()
		defer m.mu.Unlock()
		switch name {
		case telemetry.MetricPolicyDenials:
			*m.denials = append(*m.denials, m.tags["agent"]+": "+m.tags["rule"])
		case telemetry.MetricCycles:
			*m.finished = append(*m.finished, m.tags["agent"]+"/"+m.tags["outcome"])
		}
	})
}

func (m *recordingMetrics) Gauge(string) client.MetricsGauge {
	return client.MetricsNopHandler.Gauge("")
}
func (m *recordingMetrics) Timer(string) client.MetricsTimer {
	return client.MetricsNopHandler.Timer("")
}

type counterFunc func(int64)

func (f counterFunc) Inc(n int64) { f(n) }

// The canonical bytes are the contract with agents in every language:
// they must never change for a given request (golden bytes).
func TestCanonicalRequestIsStable(t *testing.T) {
	req := goldenRequest()
	got, err := contract.CanonicalRequest(req)
	require.NoError(t, err)
	const want = `{"actions":[{"params":{"10":"ten","9":"nine","a":{"y":2,"z":1},"b":[1e+21,1e-7,0.1,0,123.456,-5,true,null],"replicas":5},"rationale":"absorb the spike","type":"scale"},{"params":{},"rationale":"","type":"inspect"}],"agent_id":"sample","cycle_id":"c-1","format":"airlock.cycle-request.v1","principal":"agent:sample","signed_at":"2026-11-25T14:03:07Z","thoughts":[{"confidence":0.9,"content":"p99 <900ms> & \"rising\"\n\t\u0001\\ ` + "\u2028é😀" + `","step":1},{"confidence":1,"content":"x","step":2}]}`
	assert.Equal(t, want, string(got))

	t.Run("the signature itself is not signed, signed_at is", func(t *testing.T) {
		other := goldenRequest()
		other.Signature.Signature, other.Signature.Key, other.Signature.KeyVersion = "vault:v9:xyz", "k", 9
		b, err := contract.CanonicalRequest(other)
		require.NoError(t, err)
		assert.Equal(t, string(got), string(b))
		other.Signature.SignedAt = "2026-11-25T14:03:08Z"
		b, err = contract.CanonicalRequest(other)
		require.NoError(t, err)
		assert.NotEqual(t, string(got), string(b))
	})
	t.Run("what the worker decodes canonicalizes to the same bytes", func(t *testing.T) {
		raw, err := json.Marshal(req)
		require.NoError(t, err)
		var decoded contract.CycleRequest
		require.NoError(t, json.Unmarshal(raw, &decoded))
		b, err := contract.CanonicalRequest(decoded)
		require.NoError(t, err)
		assert.Equal(t, string(got), string(b))
	})
	t.Run("NaN is refused", func(t *testing.T) {
		bad := goldenRequest()
		bad.Thoughts[0].Confidence = math.NaN()
		_, err := contract.CanonicalRequest(bad)
		assert.Error(t, err)
	})
}

func goldenRequest() contract.CycleRequest {
	return contract.CycleRequest{
		AgentID: "sample", CycleID: "c-1", Principal: "agent:sample",
		Thoughts: []contract.Thought{
			{Step: 1, Content: "p99 <900ms> & \"rising\"\n\t\x01\\ \u2028é😀", Confidence: 0.9},
			{Step: 2, Content: "x", Confidence: 1},
		},
		Actions: []policy.Proposal{
			{Type: "scale", Rationale: "absorb the spike", Params: map[string]any{
				"replicas": 5, "9": "nine", "10": "ten", "a": map[string]any{"z": 1, "y": 2.0},
				"b": []any{1e21, 1e-7, 0.1, math.Copysign(0, -1), 123.456, int64(-5), true, nil},
			}},
			{Type: "inspect"},
		},
		Signature: &contract.RequestSignature{SignedAt: "2026-11-25T14:03:07Z", Signature: "vault:v1:abc", KeyVersion: 1},
	}
}

// The README's JavaScript (examples/sign-request.mjs) produces the same
// bytes as the worker, from the request's plain JSON.
func TestCanonicalRequestMatchesJavaScript(t *testing.T) {
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node (20, on every machine of this project) runs the JavaScript signing check")
	for name, req := range map[string]contract.CycleRequest{
		"golden":         goldenRequest(),
		"omitted fields": {AgentID: "a", CycleID: "b", Actions: []policy.Proposal{{Type: "t"}}, Signature: &contract.RequestSignature{SignedAt: "2026-01-01T00:00:00Z"}},
		"versioned": {AgentID: "a", CycleID: "b", Version: "v2", CorrelationID: "in-1", Actions: []policy.Proposal{{Type: "t"}},
			Signature: &contract.RequestSignature{SignedAt: "2026-01-01T00:00:00Z"}},
		"correlation only": {AgentID: "a", CycleID: "b", CorrelationID: "in-1", Actions: []policy.Proposal{{Type: "t"}},
			Signature: &contract.RequestSignature{SignedAt: "2026-01-01T00:00:00Z"}},
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := json.Marshal(req)
			require.NoError(t, err)
			script := `import("./examples/sign-request.mjs").then(m => { const r = JSON.parse(process.argv[1]);
				process.stdout.write(m.canonicalRequest(r, r.signature.signed_at)) })`
			cmd := exec.Command(node, "-e", script, string(raw))
			cmd.Dir = ".."
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			want, err := contract.CanonicalRequest(req)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(out))
		})
	}
}

// refused runs req to its end and returns the refusal.
func refused(t *testing.T, s *cycleSuite) *temporal.ApplicationError {
	t.Helper()
	require.True(t, s.env.IsWorkflowCompleted())
	err := s.env.GetWorkflowError()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "got %v", err)
	assert.Equal(t, contract.ErrTypeInvalidRequest, appErr.Type())
	assert.True(t, appErr.NonRetryable())
	return appErr
}

func TestUnverifiedRequestsAreRefusedBeforeAnythingIsPlannedOrLeased(t *testing.T) {
	ask := request("adv", inspect, scale)
	tests := map[string]struct {
		prepare func(s *cycleSuite) contract.CycleRequest
		// workflowID overrides cycle/<agent>/<cycle>.
		workflowID string
		reason     string
		detail     string
	}{
		"unsigned": {
			prepare: func(*cycleSuite) contract.CycleRequest { return ask },
			reason:  activities.UnverifiedUnsigned, detail: "agent_id alone proves nothing",
		},
		"signed by another agent's key": {
			prepare: func(s *cycleSuite) contract.CycleRequest { return signAs("auto", ask, s.env.Now()) },
			reason:  activities.UnverifiedOtherAgent, detail: "request claims agent adv but was signed by agent auto",
		},
		"signed by another agent's key, lying about the key": {
			prepare: func(s *cycleSuite) contract.CycleRequest {
				r := signAs("auto", ask, s.env.Now())
				r.Signature.Key = vault.AgentKeyName("adv")
				return r
			},
			reason: activities.UnverifiedBadSignature, detail: "not signed by agent adv",
		},
		"altered after signing": {
			prepare: func(s *cycleSuite) contract.CycleRequest {
				r := signAs("adv", ask, s.env.Now())
				r.Actions = []policy.Proposal{inspect, {Type: "scale", Params: map[string]any{"replicas": 30}}}
				return r
			},
			reason: activities.UnverifiedBadSignature, detail: "not signed by agent adv",
		},
		"principal changed after signing": {
			prepare: func(s *cycleSuite) contract.CycleRequest {
				r := signAs("adv", ask, s.env.Now())
				r.Principal = "U9"
				return r
			},
			reason: activities.UnverifiedBadSignature,
		},
		"stale": {
			prepare: func(s *cycleSuite) contract.CycleRequest {
				return signAs("adv", ask, s.env.Now().Add(-contract.MaxSignatureSkew-time.Minute))
			},
			reason: activities.UnverifiedStale, detail: "more than 5m0s apart",
		},
		"signed in the future": {
			prepare: func(s *cycleSuite) contract.CycleRequest {
				return signAs("adv", ask, s.env.Now().Add(contract.MaxSignatureSkew+time.Minute))
			},
			reason: activities.UnverifiedStale,
		},
		"signed_at not RFC 3339": {
			prepare: func(s *cycleSuite) contract.CycleRequest {
				r := signAs("adv", ask, s.env.Now())
				r.Signature.SignedAt = "yesterday"
				return r
			},
			reason: activities.UnverifiedMalformed, detail: `signed_at "yesterday" is not RFC 3339`,
		},
		"started under another workflow id": {
			prepare:    func(s *cycleSuite) contract.CycleRequest { return signAs("adv", ask, s.env.Now()) },
			workflowID: "cycle/adv/something-else",
			reason:     activities.UnverifiedWorkflowID, detail: "a signed cycle runs as workflow cycle/adv/c1",
		},
		"worker without a verifier": {
			prepare: func(s *cycleSuite) contract.CycleRequest {
				s.acts.Identity = nil
				return signAs("adv", ask, s.env.Now())
			},
			reason: activities.UnverifiedNoVerifier, detail: "the worker has no identity verifier",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := newRecordingMetrics()
			s := newEnvWith(t, m)
			req := tc.prepare(s)
			id := tc.workflowID
			if id == "" {
				id = contract.CycleWorkflowID(req.AgentID, req.CycleID)
			}
			s.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: id})
			s.env.ExecuteWorkflow(contract.CycleWorkflowName, req)

			appErr := refused(t, s)
			assert.Contains(t, appErr.Error(), "unverified: "+tc.reason)
			assert.Contains(t, appErr.Error(), tc.detail)
			var reason string
			require.NoError(t, appErr.Details(&reason))
			assert.Equal(t, tc.reason, reason)
			assert.Equal(t, []string{"adv: unverified: " + tc.reason}, *m.denials, "reported as a policy denial")
			assert.Empty(t, *m.finished)
			s.env.AssertNotCalled(t, "Plan", mock.Anything, mock.Anything)
			s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
			s.env.AssertNotCalled(t, "DryRunAction", mock.Anything, mock.Anything)

			trail := auditOf(t, s)
			require.Equal(t, contract.AuditSignature, trail[len(trail)-1].Kind, "the refusal's head is signed (or says why not)")
			last := trail[len(trail)-2]
			assert.Equal(t, contract.AuditIdentity, last.Kind)
			assert.Equal(t, "request refused: unverified: "+tc.reason, last.Summary)
			assert.Equal(t, tc.reason, last.Data["reason"])
			assert.Nil(t, contract.VerifyAudit(trail))
		})
	}
}

// auditOf reads the trail of a closed cycle through its query.
func auditOf(t *testing.T, s *cycleSuite) []contract.AuditEntry {
	t.Helper()
	v, err := s.env.QueryWorkflow(contract.QueryAudit)
	require.NoError(t, err)
	var trail []contract.AuditEntry
	require.NoError(t, v.Get(&trail))
	require.NotEmpty(t, trail)
	return trail
}

// The activity's answers, mocked: a refusal from Vault, and an outage that
// outlasts the retries (the cycle fails closed).
func TestVerifyActivityAnswersMocked(t *testing.T) {
	t.Run("refused by the verifier", func(t *testing.T) {
		m := newRecordingMetrics()
		s := newEnvWith(t, m)
		s.env.OnActivity(s.acts.VerifyRequest, mock.Anything, mock.Anything).Return(activities.VerifyOutput{},
			activities.Unverified(activities.UnverifiedBadSignature, "signature does not verify"))
		s.execute(request("auto", inspect))
		appErr := refused(t, s)
		assert.Equal(t, "unverified: bad signature: signature does not verify", appErr.Message(), "named once, not nested")
		assert.Equal(t, []string{"auto: unverified: bad signature"}, *m.denials)
		s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	})
	t.Run("vault down", func(t *testing.T) {
		m := newRecordingMetrics()
		s := newEnvWith(t, m)
		s.env.OnActivity(s.acts.VerifyRequest, mock.Anything, mock.Anything).Return(activities.VerifyOutput{},
			fmt.Errorf("verify request: %w", vault.ErrUnavailable))
		s.execute(request("auto", inspect))
		appErr := refused(t, s)
		assert.Contains(t, appErr.Error(), "unverified: verification unavailable")
		assert.Equal(t, []string{"auto: unverified: verification unavailable"}, *m.denials)
		s.env.AssertNotCalled(t, "StageAction", mock.Anything, mock.Anything)
	})
}

func TestVerifiedRequestRunsAndIsRecordedForNonRepudiation(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	req := request("auto", inspect)
	req.Principal = "agent:auto"
	req = signAs("auto", req, s.env.Now().Add(-time.Minute))
	res := runCycle(t, s, req)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)

	var verified *contract.AuditEntry
	for i, e := range res.Audit {
		if e.Kind == contract.AuditIdentity {
			verified = &res.Audit[i]
		}
		if e.Kind == contract.AuditPolicy {
			require.NotNil(t, verified, "verification comes before any policy decision")
		}
	}
	require.NotNil(t, verified)
	assert.Equal(t, "request verified: signed by agent:auto", verified.Summary)
	assert.Equal(t, "agent:auto", verified.Data["signer"])
	assert.Equal(t, "transit/airlock-agent-auto", verified.Data["key"])
	assert.EqualValues(t, 1, verified.Data["key_version"])
	assert.Equal(t, req.Signature.Signature, verified.Data["signature"])
	assert.Equal(t, req.Signature.SignedAt, verified.Data["signed_at"])
	assert.Nil(t, contract.VerifyAudit(res.Audit))
}

// Self-approval is checked against the verified signer and the principal
// it signed — not against whatever string a caller typed.
func TestVerifiedSignerAndSignedPrincipalCannotApprove(t *testing.T) {
	s := newEnv(t)
	s.mockRunOK()
	var log decisionLog
	h := hashOf(t, s, "adv", scale)
	d := contract.Decision{ActionIndex: 0, ActionHash: h, Kind: contract.DecisionApprove, Via: "cli"}
	for i, who := range []string{"agent:adv", "U3", "U1"} {
		d := d
		d.Approver = who
		s.decideAt(time.Duration(i+1)*time.Minute, &log, d)
	}
	req := request("adv", scale)
	req.Principal = "U3" // signed below: the agent says U3 asked for this cycle
	res := runCycle(t, s, req)

	require.Len(t, log.rejected, 2, "%v", log.rejected)
	assert.Contains(t, log.rejected[0], "agent:adv requested this cycle and cannot decide on it")
	assert.Contains(t, log.rejected[1], "U3 requested this cycle and cannot decide on it")
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome, "U1 approved")
	require.Len(t, res.Actions[0].Decisions, 1)
	assert.Equal(t, "U1", res.Actions[0].Decisions[0].Approver)
}
