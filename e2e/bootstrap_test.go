package e2e

import (
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/vault"
)

// `airlock bootstrap` (what docker-compose runs before its worker) prepares
// a catalog on a real Vault and apiserver, and repairs what went missing.
// It runs with the e2e worker's own catalog: bootstrap makes the token
// roles allow exactly one catalog's policies.
func TestBootstrapPreparesACatalog(t *testing.T) {
	ctx := t.Context()
	const ns = "airlock-e2e-shadow"
	// Drift to repair: the agent namespace lost its quota.
	require.NoError(t, env.kube.CoreV1().ResourceQuotas(ns).Delete(ctx, k8s.ResourceQuotaName, metav1.DeleteOptions{}))

	out, err := cli(t, "bootstrap", "--catalog", env.workerConfig.CatalogPath, "--kubeconfig", env.stack.Kubeconfig)
	require.NoError(t, err, out)
	assert.Contains(t, out, "bootstrapped")
	assert.Contains(t, out, "e2e-shadow")

	q, err := env.kube.CoreV1().ResourceQuotas(ns).Get(ctx, k8s.ResourceQuotaName, metav1.GetOptions{})
	require.NoError(t, err, "the quota is back")
	assert.Equal(t, "10", q.Spec.Hard.Pods().String())

	cfg := api.DefaultConfig()
	cfg.Address = env.stack.VaultAddr
	root, err := api.NewClient(cfg)
	require.NoError(t, err)
	root.SetToken(env.stack.VaultToken)
	pol, err := root.Sys().GetPolicyWithContext(ctx, "airlock-e2e-write")
	require.NoError(t, err)
	assert.NotEmpty(t, pol, "the actions' Vault policies exist")
	role, err := root.Logical().ReadWithContext(ctx, "auth/token/roles/"+vault.DefaultTokenRole)
	require.NoError(t, err)
	require.NotNil(t, role)
	assert.Contains(t, role.Data["allowed_policies"], "airlock-e2e-write", "the action token role allows the catalog's policies")
	key, err := root.Logical().ReadWithContext(ctx, "transit/keys/"+vault.AgentKeyName("e2e-shadow"))
	require.NoError(t, err)
	require.NotNil(t, key, "the agent's signing key exists")
	assert.Equal(t, "ed25519", key.Data["type"])
}
