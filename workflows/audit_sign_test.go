package workflows_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/vault"
)

// edSigner stands in for the Transit audit key (the e2e test uses Vault's);
// the first failFirst calls fail as an unreachable Vault would.
type edSigner struct {
	priv      ed25519.PrivateKey
	mu        sync.Mutex
	calls     int
	failFirst int
}

func newEdSigner(t *testing.T, failFirst int) *edSigner {
	_, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	return &edSigner{priv: priv, failFirst: failFirst}
}

func (s *edSigner) Key() string { return "airlock-audit" }

func (s *edSigner) Sign(_ context.Context, msg []byte) (string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.failFirst {
		return "", 0, fmt.Errorf("sign audit head: %w", vault.ErrUnavailable)
	}
	return "vault:v3:" + base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg)), 3, nil
}

func (s *edSigner) verify(msg []byte, sig string) (int, error) {
	b, err := base64.StdEncoding.DecodeString(sig[len("vault:v3:"):])
	if err != nil || !ed25519.Verify(s.priv.Public().(ed25519.PublicKey), msg, b) {
		return 0, errors.New("bad signature")
	}
	return 3, nil
}

func signatures(trail []contract.AuditEntry) (out []contract.AuditEntry) {
	for _, e := range trail {
		if e.Kind == contract.AuditSignature {
			out = append(out, e)
		}
	}
	return out
}

func TestTrailHeadIsSignedAtTheDecisionAndAtTheEnd(t *testing.T) {
	s := newEnv(t)
	signer := newEdSigner(t, 0)
	s.acts.AuditSigner = signer
	s.mockRunOK()
	var log decisionLog
	s.decideAt(time.Minute, &log, contract.Decision{ActionIndex: 0, ActionHash: hashOf(t, s, "adv", scale), Kind: contract.DecisionApprove, Approver: "U2", Via: "slack"})
	res := runCycle(t, s, request("adv", scale))
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)

	sigs := signatures(res.Audit)
	require.Len(t, sigs, 2, "one signature after the decision, one at the end")
	decided := res.Audit[int(sigs[0].Data["head_seq"].(float64))]
	assert.Equal(t, contract.AuditDecision, decided.Kind, "the first signature covers the approval")
	assert.Equal(t, false, sigs[0].Data["final"])
	last := res.Audit[len(res.Audit)-1]
	assert.Equal(t, contract.AuditSignature, last.Kind, "the final signature is the trail's last entry")
	assert.Equal(t, true, last.Data["final"])
	assert.Equal(t, "vault:v3:", last.Data["signature"].(string)[:9])
	assert.Contains(t, last.Summary, "signed by transit key airlock-audit version 3")

	r, err := contract.VerifyAuditSignatures(res.Audit, "", signer.verify)
	require.NoError(t, err)
	assert.True(t, r.Final)
	assert.Equal(t, 3, r.Last.KeyVersion)
	assert.Equal(t, res.Audit, auditOf(t, s), "the result and the audit query agree")
}

func TestSigningRetriesWhileVaultIsDown(t *testing.T) {
	s := newEnv(t)
	signer := newEdSigner(t, 2)
	s.acts.AuditSigner = signer
	s.mockRunOK()
	res := runCycle(t, s, request("auto", inspect))
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	_, err := contract.VerifyAuditSignatures(res.Audit, "", signer.verify)
	require.NoError(t, err, "signed once Vault answered")
	assert.Equal(t, 3, signer.calls)
}

func TestAnUnsignedHeadKeepsTheResultAndSaysSo(t *testing.T) {
	s := newEnv(t) // no AuditSigner: a worker without the audit key
	s.mockRunOK()
	res := runCycle(t, s, request("auto", inspect))
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "the outcome never depends on the audit key")
	last := res.Audit[len(res.Audit)-1]
	assert.Equal(t, contract.AuditSignature, last.Kind)
	assert.Contains(t, last.Summary, "NOT signed")
	_, err := contract.VerifyAuditSignatures(res.Audit, "", func([]byte, string) (int, error) { return 0, errors.New("unreachable") })
	require.ErrorIs(t, err, contract.ErrAuditUnsigned)
}
