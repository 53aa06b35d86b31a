package deploy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/airlockhq/airlock/vault"
)

// The worker Deployment is valid for the real apiserver (server-side dry
// run, nothing created) and runs restricted-compliant.
func TestWorkerDeploymentIsAdmittedAndRestricted(t *testing.T) {
	ctx := t.Context()
	data, err := os.ReadFile(filepath.Join("base", "worker.yaml"))
	require.NoError(t, err)
	var d appsv1.Deployment
	require.NoError(t, yaml.UnmarshalStrict(data, &d))
	cs, err := kubernetes.NewForConfig(stack.RestConfig)
	require.NoError(t, err)
	ns := "airlock-deploy-check"
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	d.Namespace = ns
	_, err = cs.AppsV1().Deployments(ns).Create(ctx, &d, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.NoError(t, err, "the apiserver admits the Deployment")
	c := d.Spec.Template.Spec.Containers[0]
	assert.True(t, *d.Spec.Template.Spec.SecurityContext.RunAsNonRoot)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	assert.Equal(t, "airlock-worker", d.Spec.Template.Spec.ServiceAccountName)
	for _, e := range c.Env {
		assert.NotContains(t, []string{"VAULT_TOKEN", "SLACK_SIGNING_SECRET"}, e.Name, "no secret in plain env")
	}
}

// The Vault policies in deploy/vault are what the code generates, so the
// files an operator applies never drift from what the worker needs.
func TestVaultPolicyFilesMatchTheCode(t *testing.T) {
	for file, want := range map[string]string{
		"airlock-worker.hcl":  vault.WorkerPolicyHCL(vault.WorkerPolicyConfig{}),
		"airlock-agent.hcl":   vault.AgentPolicyHCL(vault.DefaultTokenRole, vault.DefaultReadTokenRole),
		"airlock-auditor.hcl": vault.AuditorPolicyHCL(),
	} {
		got, err := os.ReadFile(filepath.Join("vault", file))
		require.NoError(t, err)
		assert.Equal(t, want, string(got), "deploy/vault/%s is stale: regenerate it", file)
	}
}
