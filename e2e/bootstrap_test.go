package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/vault"
)

// `airlock bootstrap` (what docker-compose runs before its worker) prepares
// a catalog's agents on a real Vault and apiserver: the agent's namespace
// with its quota, the Vault policies its actions name, and its signing key.
func TestBootstrapPreparesACatalog(t *testing.T) {
	dir := t.TempDir()
	catalog := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(catalog, []byte(`
actions:
  - name: boot-read
    image: docker.io/library/busybox`+digest+`
    command: ["true"]
    class: read
    risk: low
    vault_policies: [airlock-boot-read]
agents:
  - id: e2e-boot
    owner: airlock-tests
    approvers: [U1]
    namespace: airlock-e2e-boot
    actions: [boot-read]
    phases: {read: autonomous, write: shadow}
    quota: {pods: 3}
`), 0o600))

	out, err := cli(t, "bootstrap", "--catalog", catalog, "--kubeconfig", env.stack.Kubeconfig)
	require.NoError(t, err, out)
	assert.Contains(t, out, "bootstrapped 1 agents ([e2e-boot])")

	ctx := t.Context()
	ns, err := env.kube.CoreV1().Namespaces().Get(ctx, "airlock-e2e-boot", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	qs, err := env.kube.CoreV1().ResourceQuotas("airlock-e2e-boot").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, qs.Items, 1)
	assert.Equal(t, "3", qs.Items[0].Spec.Hard.Pods().String())

	cfg := api.DefaultConfig()
	cfg.Address = env.stack.VaultAddr
	root, err := api.NewClient(cfg)
	require.NoError(t, err)
	root.SetToken(env.stack.VaultToken)
	pol, err := root.Sys().GetPolicyWithContext(ctx, "airlock-boot-read")
	require.NoError(t, err)
	assert.NotEmpty(t, pol, "the action's Vault policy exists")
	key, err := root.Logical().ReadWithContext(ctx, "transit/keys/"+vault.AgentKeyName("e2e-boot"))
	require.NoError(t, err)
	require.NotNil(t, key, "the agent's signing key exists")
	assert.Equal(t, "ed25519", key.Data["type"])

	// Idempotent: a second run changes nothing and succeeds.
	out, err = cli(t, "bootstrap", "--catalog", catalog, "--kubeconfig", env.stack.Kubeconfig)
	require.NoError(t, err, out)
}
