package vault_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/vault"
)

// startVault starts a dev Vault for one test (≈0.1 s). The Transit tests do
// not use TestMain so they stay independent of other test files here.
func startVault(t *testing.T) *devstack.Stack {
	t.Helper()
	s, err := devstack.Start(t.Context(), devstack.Options{Vault: true, Logf: t.Logf})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Stop()) })
	return s
}

var mountSeq atomic.Int64

// newTransit enables Transit at a fresh mount (through sys/mounts) and
// creates its key, so tests never share key versions.
func newTransit(t *testing.T, s *devstack.Stack) *vault.Transit {
	t.Helper()
	mount := fmt.Sprintf("transit-%d", mountSeq.Add(1))
	tr, err := vault.NewTransit(vault.Config{Address: s.VaultAddr, Token: s.VaultToken}, mount, "")
	require.NoError(t, err)
	require.NoError(t, tr.EnsureMount(t.Context()))
	require.NoError(t, tr.EnsureKey(t.Context()))
	return tr
}

func TestTransit(t *testing.T) {
	s := startVault(t)
	ctx := t.Context()

	t.Run("ensure mount and key are idempotent", func(t *testing.T) {
		tr := newTransit(t, s)
		assert.NoError(t, tr.EnsureMount(ctx))
		assert.NoError(t, tr.EnsureKey(ctx))
		assert.Regexp(t, `^transit-\d+/airlock-payloads$`, tr.KeyID())
	})

	t.Run("data key unwraps to the same key", func(t *testing.T) {
		tr := newTransit(t, s)
		key, wrapped, err := tr.DataKey(ctx)
		require.NoError(t, err)
		assert.Len(t, key, 32)
		assert.True(t, strings.HasPrefix(wrapped, "vault:v1:"), wrapped)
		assert.NotContains(t, wrapped, base64.StdEncoding.EncodeToString(key))

		got, err := tr.Unwrap(ctx, wrapped)
		require.NoError(t, err)
		assert.Equal(t, key, got)

		key2, wrapped2, err := tr.DataKey(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, key, key2, "every data key is fresh")
		assert.NotEqual(t, wrapped, wrapped2)
	})

	t.Run("rotation keeps old data keys readable", func(t *testing.T) {
		tr := newTransit(t, s)
		oldKey, oldWrapped, err := tr.DataKey(ctx)
		require.NoError(t, err)
		require.NoError(t, tr.Rotate(ctx))
		newKey, newWrapped, err := tr.DataKey(ctx)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(newWrapped, "vault:v2:"), "new data keys use the new version: %s", newWrapped)

		got, err := tr.Unwrap(ctx, oldWrapped)
		require.NoError(t, err)
		assert.Equal(t, oldKey, got)
		got, err = tr.Unwrap(ctx, newWrapped)
		require.NoError(t, err)
		assert.Equal(t, newKey, got)
	})

	t.Run("tampered wrapped key is refused without leaking", func(t *testing.T) {
		tr := newTransit(t, s)
		key, wrapped, err := tr.DataKey(ctx)
		require.NoError(t, err)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(wrapped, "vault:v1:"))
		require.NoError(t, err)
		raw[len(raw)-1] ^= 1
		_, err = tr.Unwrap(ctx, "vault:v1:"+base64.StdEncoding.EncodeToString(raw))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "unwrap data key: HTTP 400")
		assert.False(t, errors.Is(err, vault.ErrUnavailable), "a bad ciphertext is not an outage")
		assert.NotContains(t, err.Error(), base64.StdEncoding.EncodeToString(key))

		_, err = tr.Unwrap(ctx, "not-a-ciphertext")
		assert.ErrorContains(t, err, "not a Transit ciphertext")
	})

	t.Run("missing key", func(t *testing.T) {
		tr := newTransit(t, s)
		other, err := vault.NewTransit(vault.Config{Address: s.VaultAddr, Token: s.VaultToken}, strings.Split(tr.KeyID(), "/")[0], "nobody")
		require.NoError(t, err)
		_, _, err = other.DataKey(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "transit data key: HTTP 400")
		assert.False(t, errors.Is(err, vault.ErrUnavailable))
	})

	t.Run("a token that may only create data keys cannot unwrap them", func(t *testing.T) {
		tr := newTransit(t, s)
		mount := strings.Split(tr.KeyID(), "/")[0]
		root, err := api.NewClient(&api.Config{Address: s.VaultAddr})
		require.NoError(t, err)
		root.SetToken(s.VaultToken)
		require.NoError(t, root.Sys().PutPolicyWithContext(ctx, mount+"-encrypt",
			fmt.Sprintf(`path "%s/datakey/plaintext/airlock-payloads" { capabilities = ["update"] }`, mount)))
		sec, err := root.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
			Policies: []string{mount + "-encrypt"}, NoDefaultPolicy: true, TTL: "5m",
		})
		require.NoError(t, err)

		limited, err := vault.NewTransit(vault.Config{Address: s.VaultAddr, Token: sec.Auth.ClientToken}, mount, "")
		require.NoError(t, err)
		_, wrapped, err := limited.DataKey(ctx)
		require.NoError(t, err)
		_, err = limited.Unwrap(ctx, wrapped)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "HTTP 403")
	})

	t.Run("unreachable vault is ErrUnavailable", func(t *testing.T) {
		tr, err := vault.NewTransit(vault.Config{Address: "http://127.0.0.1:1", Token: "t"}, "", "")
		require.NoError(t, err)
		_, _, err = tr.DataKey(ctx)
		assert.ErrorIs(t, err, vault.ErrUnavailable)
	})
}

func TestNewTransit(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "")
	cfg := vault.Config{Address: "http://127.0.0.1:8200", Token: "t"}
	tests := map[string]struct {
		cfg        vault.Config
		mount, key string
		wantID     string
		wantErr    string
	}{
		"defaults":            {cfg: cfg, wantID: "transit/airlock-payloads"},
		"custom":              {cfg: cfg, mount: "/secrets/transit/", key: "k-1", wantID: "secrets/transit/k-1"},
		"key with slash":      {cfg: cfg, key: "a/b", wantErr: "invalid key name"},
		"mount with space":    {cfg: cfg, mount: "a b", wantErr: "invalid mount path"},
		"empty mount segment": {cfg: cfg, mount: "a//b", wantErr: "invalid mount path"},
		"dot-dot mount":       {cfg: cfg, mount: "a/../sys", wantErr: "invalid mount path"},
		"dot-dot key":         {cfg: cfg, key: "..", wantErr: "invalid key name"},
		"no token":            {cfg: vault.Config{Address: cfg.Address}, wantErr: "no token"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tr, err := vault.NewTransit(tc.cfg, tc.mount, tc.key)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantID, tr.KeyID())
		})
	}
}
