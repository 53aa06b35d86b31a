package vault_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/vault"
)

// loginAsAgent logs in through the agent's AppRole exactly as an agent
// process would, and returns its session (closed at the end of the test).
func loginAsAgent(t *testing.T, id vault.AgentIdentity) *vault.Session {
	t.Helper()
	sid, err := rootBroker(t).AgentSecretID(t.Context(), id.AgentID)
	require.NoError(t, err)
	assertHidden(t, sid, sid.Value())
	file := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(file, []byte(sid.Value()), 0o600))
	sess, err := vault.Login(t.Context(), vault.Config{Address: stack.VaultAddr}, vault.LoginConfig{
		Method: vault.AuthAppRole, Mount: id.AppRoleMount, RoleID: id.RoleID, SecretIDFile: file,
	})
	require.NoError(t, err)
	t.Cleanup(sess.Close)
	return sess
}

// workerVerifier verifies with a token that holds only the worker policy,
// so the test proves that policy is enough, and no more.
func workerVerifier(t *testing.T) (*vault.Verifier, *vault.Signer) {
	t.Helper()
	pol := uniq("airlock-worker")
	require.NoError(t, rootBroker(t).PutPolicy(t.Context(), pol, vault.WorkerPolicyHCL(vault.WorkerPolicyConfig{})))
	tok, err := rootClient(t).Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{pol}, TTL: "1h", NoDefaultPolicy: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rootClient(t).Auth().Token().RevokeOrphan(tok.Auth.ClientToken) })
	b, err := vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: tok.Auth.ClientToken})
	require.NoError(t, err)
	return vault.NewVerifier(b), b.Signer()
}

func TestAgentSigning(t *testing.T) {
	ctx := t.Context()
	root := rootBroker(t)
	alice, bob := uniq("alice"), uniq("bob")
	aliceID, err := root.EnsureAgentIdentity(ctx, alice)
	require.NoError(t, err)
	bobID, err := root.EnsureAgentIdentity(ctx, bob)
	require.NoError(t, err)
	again, err := root.EnsureAgentIdentity(ctx, alice)
	require.NoError(t, err, "idempotent")
	assert.Equal(t, aliceID, again)
	assert.Equal(t, "transit/airlock-agent-"+alice, aliceID.Key)
	assert.NotEmpty(t, aliceID.RoleID)

	aliceSess := loginAsAgent(t, aliceID)
	verifier, workerSigner := workerVerifier(t)
	data := []byte(`{"agent_id":"` + alice + `"}`)

	t.Run("an agent's own token has only its signer policy", func(t *testing.T) {
		s, err := rootClient(t).Auth().Token().LookupAccessor(aliceSess.Accessor())
		require.NoError(t, err)
		pols, _ := s.TokenPolicies()
		assert.ElementsMatch(t, []string{"default", vault.AgentSignerPolicyName(alice)}, pols)
		assert.Equal(t, `# Airlock agent `+alice+`: sign its own cycle requests, nothing else.
path "transit/sign/airlock-agent-`+alice+`" {
  capabilities = ["update"]
}
`, vault.AgentSignerPolicyHCL(alice))
	})

	t.Run("the agent signs as itself and the worker verifies", func(t *testing.T) {
		sig, err := aliceSess.Signer().Sign(ctx, alice, data)
		require.NoError(t, err)
		assert.Equal(t, vault.AgentKeyName(alice), sig.Key)
		assert.Equal(t, 1, sig.KeyVersion)
		assert.True(t, strings.HasPrefix(sig.Value, "vault:v1:"), sig.Value)
		v, err := verifier.Verify(ctx, alice, data, sig.Value)
		require.NoError(t, err)
		assert.Equal(t, vault.Verification{Key: "transit/airlock-agent-" + alice, KeyVersion: 1}, v)
	})

	t.Run("an agent cannot sign as another agent", func(t *testing.T) {
		_, err := aliceSess.Signer().Sign(ctx, bob, data)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "403")
		assert.Contains(t, err.Error(), "sign as agent "+bob)
	})

	t.Run("the worker cannot sign at all", func(t *testing.T) {
		for _, agent := range []string{alice, bob} {
			_, err := workerSigner.Sign(ctx, agent, data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "403")
		}
	})

	t.Run("neither can read or export keys", func(t *testing.T) {
		c := agentClient(t, aliceID)
		for _, path := range []string{
			"transit/keys/" + vault.AgentKeyName(alice),
			"transit/export/signing-key/" + vault.AgentKeyName(alice),
			"transit/keys/" + vault.DefaultTransitKey,
			"auth/approle/role/" + vault.AgentKeyName(bob) + "/role-id",
		} {
			_, err := c.Logical().Read(path)
			assert.ErrorContains(t, err, "403", path)
		}
		_, err := c.Logical().Write("transit/datakey/plaintext/"+vault.DefaultTransitKey, nil)
		assert.ErrorContains(t, err, "403", "no payload keys")
		_, err = c.Logical().Write("auth/approle/role/"+vault.AgentKeyName(bob)+"/secret-id", nil)
		assert.ErrorContains(t, err, "403", "cannot become bob")
	})

	t.Run("signatures that do not verify", func(t *testing.T) {
		sig, err := aliceSess.Signer().Sign(ctx, alice, data)
		require.NoError(t, err)
		tests := map[string]struct {
			agent, sig string
			data       []byte
		}{
			"alice's signature claimed as bob's": {bob, sig.Value, data},
			"other bytes":                        {alice, sig.Value, []byte(`{"agent_id":"mallory"}`)},
			"not a signature":                    {alice, "hello", data},
			"garbage after the prefix":           {alice, "vault:v1:AAAA", data},
			"unknown key version":                {alice, strings.Replace(sig.Value, "vault:v1:", "vault:v7:", 1), data},
			"agent without a key":                {uniq("ghost"), sig.Value, data},
			"not an agent id":                    {"../sys", sig.Value, data},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				_, err := verifier.Verify(ctx, tc.agent, tc.data, tc.sig)
				require.Error(t, err)
				assert.True(t, errors.Is(err, vault.ErrBadSignature), "got %v", err)
				assert.False(t, errors.Is(err, vault.ErrUnavailable))
			})
		}
	})

	t.Run("rotation: new signatures use the new version, old ones still verify", func(t *testing.T) {
		old, err := aliceSess.Signer().Sign(ctx, alice, data)
		require.NoError(t, err)
		_, err = rootClient(t).Logical().Write("transit/keys/"+vault.AgentKeyName(alice)+"/rotate", nil)
		require.NoError(t, err)
		sig, err := aliceSess.Signer().Sign(ctx, alice, data)
		require.NoError(t, err)
		assert.Equal(t, 2, sig.KeyVersion)
		v, err := verifier.Verify(ctx, alice, data, sig.Value)
		require.NoError(t, err)
		assert.Equal(t, 2, v.KeyVersion)
		v, err = verifier.Verify(ctx, alice, data, old.Value)
		require.NoError(t, err)
		assert.Equal(t, 1, v.KeyVersion)
	})

	t.Run("bob's identity is separate", func(t *testing.T) {
		bobSess := loginAsAgent(t, bobID)
		sig, err := bobSess.Signer().Sign(ctx, bob, data)
		require.NoError(t, err)
		_, err = verifier.Verify(ctx, alice, data, sig.Value)
		assert.ErrorIs(t, err, vault.ErrBadSignature)
		_, err = verifier.Verify(ctx, bob, data, sig.Value)
		assert.NoError(t, err)
	})
}

func TestEnsureAgentKey(t *testing.T) {
	ctx := t.Context()
	root := rootBroker(t)
	t.Run("creates a non-exportable ed25519 key, idempotently", func(t *testing.T) {
		id := uniq("keyed")
		require.NoError(t, root.EnsureAgentKey(ctx, id))
		require.NoError(t, root.EnsureAgentKey(ctx, id))
		s, err := rootClient(t).Logical().Read("transit/keys/" + vault.AgentKeyName(id))
		require.NoError(t, err)
		assert.Equal(t, "ed25519", s.Data["type"])
		assert.Equal(t, false, s.Data["exportable"])
	})
	t.Run("refuses a key of another type", func(t *testing.T) {
		id := uniq("aes")
		_, err := rootClient(t).Logical().Write("transit/keys/"+vault.AgentKeyName(id), map[string]any{"type": "aes256-gcm96"})
		require.NoError(t, err)
		assert.ErrorContains(t, root.EnsureAgentKey(ctx, id), "want ed25519")
	})
	t.Run("refuses an exportable key", func(t *testing.T) {
		id := uniq("exportable")
		_, err := rootClient(t).Logical().Write("transit/keys/"+vault.AgentKeyName(id), map[string]any{"type": "ed25519", "exportable": true})
		require.NoError(t, err)
		assert.ErrorContains(t, root.EnsureAgentKey(ctx, id), "exportable")
	})
	t.Run("refuses ids that are not agent ids", func(t *testing.T) {
		for _, id := range []string{"", "../sys", "a/b", "UPPER"} {
			assert.Error(t, root.EnsureAgentKey(ctx, id), id)
		}
	})
}

// agentClient is a raw client logged in through the agent's AppRole, to
// probe what an agent's token can reach.
func agentClient(t *testing.T, id vault.AgentIdentity) *api.Client {
	t.Helper()
	sid, err := rootBroker(t).AgentSecretID(t.Context(), id.AgentID)
	require.NoError(t, err)
	c := rootClient(t)
	c.ClearToken()
	s, err := c.Logical().Write("auth/"+id.AppRoleMount+"/login", map[string]any{"role_id": id.RoleID, "secret_id": sid.Value()})
	require.NoError(t, err)
	c.SetToken(s.Auth.ClientToken)
	return c
}

// Even a catalog that names an agent's signer policy cannot hand it to an
// action: a Job could then sign cycle requests as that agent.
func TestActionTokensNeverCarryASignerPolicy(t *testing.T) {
	ctx := t.Context()
	agent := uniq("signer")
	require.NoError(t, rootBroker(t).PutPolicy(ctx, vault.AgentSignerPolicyName(agent), vault.AgentSignerPolicyHCL(agent)))
	role := uniq("airlock-action")
	b, err := vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken, TokenRole: role, ReadTokenRole: role + "-read"})
	require.NoError(t, err)
	require.NoError(t, b.EnsureRole(ctx, vault.RoleConfig{AllowedPolicies: []string{"default", vault.AgentSignerPolicyName(agent)}}))
	_, err = b.IssueToken(ctx, vault.TokenRequest{Policies: []string{vault.AgentSignerPolicyName(agent)}, TTL: time.Minute})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "400")
}
