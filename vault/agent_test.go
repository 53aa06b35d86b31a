package vault_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/vault"
)

const kvReadPolicy = `
path "secret/data/agent-test/*" {
  capabilities = ["read"]
}
`

// tokenAlive tells whether a token (by accessor) still exists.
func tokenAlive(t *testing.T, b *vault.Broker, accessor string) bool {
	t.Helper()
	_, err := b.Lookup(t.Context(), accessor)
	if errors.Is(err, vault.ErrNotFound) {
		return false
	}
	require.NoError(t, err)
	return true
}

func actionRequest(wf string) vault.TokenRequest {
	return vault.TokenRequest{TTL: 10 * time.Minute, DisplayName: "action", Metadata: map[string]string{"workflow_id": wf}}
}

func TestAgentTokens(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()
	s := setupBroker(t, kvReadPolicy)
	_, err := rootClient(t).KVv2("secret").Put(ctx, "agent-test/config", map[string]any{"greeting": "hello"})
	require.NoError(t, err)

	agents, err := vault.NewAgentTokens(s.worker, s.agentConfig())
	require.NoError(t, err)
	defer agents.Close()

	issue := func(agent, wf string) vault.Credential {
		t.Helper()
		req := actionRequest(wf)
		req.Policies = []string{s.actionPolicy}
		cred, err := agents.IssueActionToken(ctx, agent, req)
		require.NoError(t, err)
		return cred
	}
	a1, a2 := issue("agent-a", "cycle/agent-a/1"), issue("agent-a", "cycle/agent-a/2")
	b1 := issue("agent-b", "cycle/agent-b/1")

	t.Run("action tokens carry exactly the requested policy", func(t *testing.T) {
		assertHidden(t, a1, a1.Value())
		assert.Equal(t, []string{s.actionPolicy}, a1.Policies)
		assert.InDelta(t, (10 * time.Minute).Seconds(), a1.TTL.Seconds(), 2)
		looked, err := rootClient(t).Auth().Token().LookupAccessor(a1.Accessor)
		require.NoError(t, err)
		assert.Equal(t, "agent-a", looked.Data["meta"].(map[string]any)["agent"])
		assert.Equal(t, "cycle/agent-a/1", looked.Data["meta"].(map[string]any)["workflow_id"])

		as, err := s.worker.As(a1)
		require.NoError(t, err)
		kv, err := as.ReadKV(ctx, "secret/agent-test/config")
		require.NoError(t, err, "the action's policy lets it read its secret")
		v, _ := kv.Get("greeting")
		assert.Equal(t, "hello", v)
		_, err = as.ReadKV(ctx, "secret/other/config")
		assert.ErrorContains(t, err, "403", "nothing outside its policy")
		_, err = as.IssueToken(ctx, vault.TokenRequest{Policies: []string{s.actionPolicy}, TTL: time.Minute})
		assert.Error(t, err, "an action token cannot mint tokens")
	})

	t.Run("one agent token per agent, recorded in the registry", func(t *testing.T) {
		accA, err := agents.Accessors(ctx, "agent-a")
		require.NoError(t, err)
		require.Len(t, accA, 1, "both of agent-a's actions share one agent token")
		looked, err := rootClient(t).Auth().Token().LookupAccessor(accA[0])
		require.NoError(t, err)
		assert.Equal(t, true, looked.Data["orphan"], "agent tokens outlive the worker's token")
		assert.Equal(t, json.Number("0"), looked.Data["explicit_max_ttl"], "no max: periodic, renewed by the worker")
		ttl, err := s.worker.Renew(ctx, vault.TokenLease(accA[0]), 0)
		require.NoError(t, err)
		assert.Equal(t, time.Hour, ttl, "a renewal restores the role's period")
		accB, err := agents.Accessors(ctx, "agent-b")
		require.NoError(t, err)
		require.Len(t, accB, 1)
		assert.NotEqual(t, accA, accB)
	})

	t.Run("revoking the agent revokes its whole tree and nothing else", func(t *testing.T) {
		before, err := agents.Accessors(ctx, "agent-a")
		require.NoError(t, err)
		revoked, err := agents.RevokeAgent(ctx, "agent-a")
		require.NoError(t, err)
		assert.Equal(t, before, revoked)
		assert.False(t, tokenAlive(t, s.worker, a1.Accessor), "child 1 revoked")
		assert.False(t, tokenAlive(t, s.worker, a2.Accessor), "child 2 revoked")
		assert.False(t, tokenAlive(t, s.worker, before[0]), "agent token revoked")
		assert.True(t, tokenAlive(t, s.worker, b1.Accessor), "another agent's action survives")

		as, err := s.worker.As(a1)
		require.NoError(t, err)
		_, err = as.ReadKV(ctx, "secret/agent-test/config")
		assert.ErrorContains(t, err, "403", "a revoked action token reads nothing")

		left, err := agents.Accessors(ctx, "agent-a")
		require.NoError(t, err)
		assert.Empty(t, left, "registry cleaned")
		again, err := agents.RevokeAgent(ctx, "agent-a")
		require.NoError(t, err, "revoking twice is harmless")
		assert.Empty(t, again)
	})

	t.Run("a new action after the kill gets a fresh agent token", func(t *testing.T) {
		a3 := issue("agent-a", "cycle/agent-a/3")
		assert.True(t, tokenAlive(t, s.worker, a3.Accessor))
		acc, err := agents.Accessors(ctx, "agent-a")
		require.NoError(t, err)
		assert.Len(t, acc, 1)
	})

	t.Run("refuses what the agent token cannot back", func(t *testing.T) {
		_, err := agents.IssueActionToken(ctx, "agent-b", vault.TokenRequest{Policies: []string{s.actionPolicy}, TTL: 2 * time.Hour})
		assert.ErrorContains(t, err, "exceeds the agent token period")
		_, err = agents.IssueActionToken(ctx, "agent-b", vault.TokenRequest{Policies: []string{"root"}, TTL: time.Minute})
		assert.Error(t, err, "a policy outside the action role")
		_, err = agents.IssueActionToken(ctx, "../agent-b", vault.TokenRequest{Policies: []string{s.actionPolicy}, TTL: time.Minute})
		assert.ErrorContains(t, err, "invalid agent id")
		_, err = agents.IssueActionToken(ctx, "agent-b", vault.TokenRequest{TTL: time.Minute})
		assert.ErrorContains(t, err, "no policies")
	})
}

// A worker restart (a new AgentTokens, the old one's tokens unrenewed but
// alive) or a second worker replica: RevokeAgent in any of them revokes
// the agent tokens of all.
func TestAgentTokensAcrossWorkers(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()
	s := setupBroker(t, kvReadPolicy)
	req := actionRequest("cycle/agent-c/1")
	req.Policies = []string{s.actionPolicy}

	before, err := vault.NewAgentTokens(s.worker, s.agentConfig())
	require.NoError(t, err)
	old, err := before.IssueActionToken(ctx, "agent-c", req)
	require.NoError(t, err)
	before.Close()
	_, err = before.IssueActionToken(ctx, "agent-c", req)
	assert.ErrorIs(t, err, vault.ErrClosed)

	after, err := vault.NewAgentTokens(s.worker, s.agentConfig())
	require.NoError(t, err)
	defer after.Close()
	fresh, err := after.IssueActionToken(ctx, "agent-c", req)
	require.NoError(t, err)
	other, err := vault.NewAgentTokens(s.worker, s.agentConfig())
	require.NoError(t, err)
	defer other.Close()

	registered, err := other.Accessors(ctx, "agent-c")
	require.NoError(t, err)
	assert.Len(t, registered, 2, "the restarted worker made a second agent token")

	revoked, err := other.RevokeAgent(ctx, "agent-c")
	require.NoError(t, err)
	assert.ElementsMatch(t, registered, revoked)
	assert.False(t, tokenAlive(t, s.worker, old.Accessor), "the action of the worker's earlier run is revoked")
	assert.False(t, tokenAlive(t, s.worker, fresh.Accessor), "the action of the other worker is revoked")

	// The worker whose agent token was revoked under it says so once, then
	// starts a new tree.
	_, err = after.IssueActionToken(ctx, "agent-c", req)
	assert.ErrorIs(t, err, vault.ErrAgentTokenRevoked)
	next, err := after.IssueActionToken(ctx, "agent-c", req)
	require.NoError(t, err)
	assert.True(t, tokenAlive(t, s.worker, next.Accessor))
}

// With RenewalTTL an action token lives only while it is renewed, up to the
// request's TTL.
func TestAgentTokensRenewalTTL(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()
	s := setupBroker(t, kvReadPolicy)
	cfg := s.agentConfig()
	cfg.RenewalTTL = 3 * time.Second
	agents, err := vault.NewAgentTokens(s.worker, cfg)
	require.NoError(t, err)
	defer agents.Close()
	req := actionRequest("cycle/agent-d/1")
	req.Policies = []string{s.actionPolicy}
	renewed, err := agents.IssueActionToken(ctx, "agent-d", req)
	require.NoError(t, err)
	unrenewed, err := agents.IssueActionToken(ctx, "agent-d", req)
	require.NoError(t, err)
	assert.LessOrEqual(t, renewed.TTL, 3*time.Second)

	looked, err := rootClient(t).Auth().Token().LookupAccessor(renewed.Accessor)
	require.NoError(t, err)
	assert.Equal(t, json.Number("600"), looked.Data["explicit_max_ttl"], "the request's TTL is the hard bound")

	r := s.worker.KeepAlive(ctx, vault.RenewOptions{}, renewed.Ref())
	defer r.Stop()
	assert.Eventually(t, func() bool { return !tokenAlive(t, s.worker, unrenewed.Accessor) },
		20*time.Second, 100*time.Millisecond, "dies soon after renewals stop")
	assert.True(t, tokenAlive(t, s.worker, renewed.Accessor), "renewed while its Job runs")
}

func TestNewAgentTokensValidates(t *testing.T) {
	b := rootBroker(t)
	_, err := vault.NewAgentTokens(b, vault.AgentConfig{Registry: "secret"})
	assert.ErrorContains(t, err, "registry")
	_, err = vault.NewAgentTokens(nil, vault.AgentConfig{})
	assert.Error(t, err)
	a, err := vault.NewAgentTokens(b, vault.AgentConfig{})
	require.NoError(t, err)
	a.Close()
	a.Close()
	_, err = a.RevokeAgent(context.Background(), "")
	assert.ErrorContains(t, err, "invalid agent id")
}
